# staging: prod's shape at a smaller size. One NAT gateway, two zones, two medium nodes, a
# small single-zone database protected from deletion. Rough monthly cost: terraform/README.md.
environment = "staging"
region      = "eu-west-1"

vpc_cidr                = "10.20.0.0/16"
availability_zone_count = 2
nat_gateway_mode        = "single"

kubernetes_version         = "1.35"
cluster_log_retention_days = 30
node_instance_types        = ["t3.large"]
node_capacity_type         = "ON_DEMAND"
node_min_size              = 2
node_desired_size          = 2
node_max_size              = 4
node_disk_size             = 30

ecr_keep_images  = 30
ecr_force_delete = false

database_mode                  = "rds"
database_instance_class        = "db.t4g.small"
database_allocated_storage     = 20
database_max_allocated_storage = 100
database_multi_az              = false
database_backup_retention_days = 7
database_deletion_protection   = true
