# prod: highly available. Three zones with a NAT gateway each, three general-purpose nodes,
# a Multi-AZ database with two weeks of backups and deletion protection.
# Rough monthly cost: terraform/README.md.
environment = "prod"
region      = "eu-west-1"

vpc_cidr                = "10.30.0.0/16"
availability_zone_count = 3
nat_gateway_mode        = "per_az"

kubernetes_version         = "1.35"
cluster_log_retention_days = 90
node_instance_types        = ["m6i.large"]
node_capacity_type         = "ON_DEMAND"
node_min_size              = 3
node_desired_size          = 3
node_max_size              = 6
node_disk_size             = 50

ecr_keep_images  = 50
ecr_force_delete = false

database_mode                  = "rds"
database_instance_class        = "db.m6g.large"
database_allocated_storage     = 100
database_max_allocated_storage = 500
database_multi_az              = true
database_backup_retention_days = 14
database_deletion_protection   = true
