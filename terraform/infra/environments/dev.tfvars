# dev: smallest footprint. One NAT gateway, two zones, two small nodes, a micro database that a
# destroy may delete. Rough monthly cost: see terraform/README.md.
environment = "dev"
region      = "eu-west-1"

vpc_cidr                = "10.10.0.0/16"
availability_zone_count = 2
nat_gateway_mode        = "single"

kubernetes_version         = "1.35"
cluster_log_retention_days = 7
node_instance_types        = ["t3.medium"]
node_capacity_type         = "ON_DEMAND"
node_min_size              = 1
node_desired_size          = 2
node_max_size              = 3
node_disk_size             = 20

ecr_keep_images  = 20
ecr_force_delete = true

# PostgreSQL inside the cluster, deployed by gantry's charts input (examples/app/charts/postgres);
# staging and prod keep RDS.
database_mode                  = "chart"
database_instance_class        = "db.t4g.micro"
database_allocated_storage     = 20
database_max_allocated_storage = 50
database_multi_az              = false
database_backup_retention_days = 1
database_deletion_protection   = false
