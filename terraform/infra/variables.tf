# Inputs of the infra layer, set per environment in environments/{dev,staging,prod}.tfvars.
# This file uses no provider, so tests/reference_stack.rs runs its validation blocks with
# Terraform alone (every validation refers only to variables).

variable "project" {
  description = "Name prefix of every resource; must match `project` of terraform/bootstrap (its IAM policies are scoped to these names)."
  type        = string
  default     = "gantry"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.project))
    error_message = "project must be 2 to 20 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "The environment this state describes; gantry selects the Terraform workspace of the same name."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging, prod."
  }
}

variable "region" {
  description = "AWS region of every resource, e.g. eu-west-1."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1 or us-east-1."
  }
}

variable "tags" {
  description = "Extra tags for every resource (environment and managed-by = gantry are always set)."
  type        = map(string)
  default     = {}
}

# --- Network ---------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "IPv4 range of the VPC; each availability zone gets a public and a private subnet carved from it."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(try(split("/", var.vpc_cidr)[1], "0")) >= 16 && tonumber(try(split("/", var.vpc_cidr)[1], "0")) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR block with a prefix length from /16 to /20, e.g. 10.0.0.0/16."
  }
}

variable "availability_zone_count" {
  description = "How many availability zones the VPC, the node group and the database subnet group span."
  type        = number
  default     = 2

  validation {
    condition     = var.availability_zone_count >= 2 && var.availability_zone_count <= 3
    error_message = "availability_zone_count must be 2 or 3 (EKS and RDS need at least two zones)."
  }
}

variable "nat_gateway_mode" {
  description = "single: one NAT gateway for all private subnets (cheaper, one zone's outage cuts egress); per_az: one per availability zone."
  type        = string
  default     = "single"

  validation {
    condition     = contains(["single", "per_az"], var.nat_gateway_mode)
    error_message = "nat_gateway_mode must be one of single, per_az."
  }
}

# --- EKS -------------------------------------------------------------------------------------

variable "kubernetes_version" {
  description = "Kubernetes minor version of the EKS cluster and its node group, e.g. 1.35 (the release gantry is tested on)."
  type        = string
  default     = "1.35"

  validation {
    condition     = can(regex("^1\\.(2[89]|3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be MAJOR.MINOR from 1.28 to 1.39, e.g. 1.35 (no patch version)."
  }
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "IPv4 ranges allowed to reach the cluster's public API endpoint (GitHub-hosted runners need it public; narrow it for self-hosted runners)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.cluster_endpoint_public_access_cidrs) > 0 && alltrue([for c in var.cluster_endpoint_public_access_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "cluster_endpoint_public_access_cidrs must be a non-empty list of IPv4 CIDR blocks, e.g. [\"203.0.113.0/24\"]."
  }
}

variable "cluster_log_retention_days" {
  description = "Days CloudWatch keeps the EKS control-plane logs (api, audit, authenticator)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.cluster_log_retention_days)
    error_message = "cluster_log_retention_days must be one of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "deploy_access_policy" {
  description = "EKS access policy of the deploy role in the cluster (cluster-wide): AmazonEKSClusterAdminPolicy lets manifests create namespaces, CRDs and cluster roles; AmazonEKSAdminPolicy or AmazonEKSEditPolicy when they do not."
  type        = string
  default     = "AmazonEKSClusterAdminPolicy"

  validation {
    condition     = contains(["AmazonEKSClusterAdminPolicy", "AmazonEKSAdminPolicy", "AmazonEKSEditPolicy"], var.deploy_access_policy)
    error_message = "deploy_access_policy must be one of AmazonEKSClusterAdminPolicy, AmazonEKSAdminPolicy, AmazonEKSEditPolicy."
  }
}

variable "deploy_role_name" {
  description = "Name of the IAM role gantry deploys with (gets an EKS access entry). Empty: PROJECT-ENVIRONMENT-deploy, the name terraform/bootstrap gives it."
  type        = string
  default     = ""

  validation {
    condition     = var.deploy_role_name == "" || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.deploy_role_name))
    error_message = "deploy_role_name must be empty or an IAM role name (1 to 64 of letters, digits and +=,.@_-), without path or ARN."
  }
}

variable "cluster_admin_principal_arns" {
  description = "Extra IAM roles or users (ARNs) that get cluster-admin access entries, e.g. an SSO role for people."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.cluster_admin_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$", a))])
    error_message = "cluster_admin_principal_arns must hold IAM role or user ARNs, e.g. arn:aws:iam::123456789012:role/admin (not assumed-role session ARNs)."
  }
}

variable "node_instance_types" {
  description = "EC2 instance types of the managed node group, most preferred first (several help SPOT capacity)."
  type        = list(string)
  default     = ["t3.medium"]

  validation {
    condition     = length(var.node_instance_types) > 0 && alltrue([for t in var.node_instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "node_instance_types must be a non-empty list of EC2 instance types such as t3.medium or m6i.large."
  }
}

variable "node_capacity_type" {
  description = "Purchase option of the nodes: ON_DEMAND or SPOT."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be one of ON_DEMAND, SPOT."
  }
}

variable "node_min_size" {
  description = "Fewest nodes of the node group."
  type        = number
  default     = 1

  validation {
    condition     = var.node_min_size >= 1 && var.node_min_size <= 100 && floor(var.node_min_size) == var.node_min_size
    error_message = "node_min_size must be a whole number from 1 to 100."
  }
}

variable "node_desired_size" {
  description = "Nodes the node group starts with (later changes by an autoscaler are ignored)."
  type        = number
  default     = 2

  validation {
    condition     = var.node_desired_size >= var.node_min_size && var.node_desired_size <= var.node_max_size
    error_message = "node_desired_size must be from node_min_size to node_max_size."
  }
}

variable "node_max_size" {
  description = "Most nodes of the node group."
  type        = number
  default     = 3

  validation {
    condition     = var.node_max_size >= var.node_min_size && var.node_max_size <= 100 && floor(var.node_max_size) == var.node_max_size
    error_message = "node_max_size must be a whole number from node_min_size to 100."
  }
}

variable "node_disk_size" {
  description = "Root volume size of each node in GiB."
  type        = number
  default     = 20

  validation {
    condition     = var.node_disk_size >= 20 && var.node_disk_size <= 500
    error_message = "node_disk_size must be from 20 to 500 GiB."
  }
}

# --- ECR -------------------------------------------------------------------------------------

variable "repositories" {
  description = "Names of the application's image repositories (created as PROJECT/ENVIRONMENT/NAME); must include backend and frontend, which gantry's example workflows build."
  type        = list(string)
  default     = ["backend", "frontend"]

  validation {
    condition     = contains(var.repositories, "backend") && contains(var.repositories, "frontend") && alltrue([for r in var.repositories : can(regex("^[a-z0-9]+([._-][a-z0-9]+)*$", r))])
    error_message = "repositories must include backend and frontend, and each name must be lower-case letters and digits separated by single . _ or -."
  }
}

variable "ecr_keep_images" {
  description = "How many commit-tagged images each repository keeps (older ones expire; rollback needs the recent ones)."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 5 && var.ecr_keep_images <= 1000
    error_message = "ecr_keep_images must be from 5 to 1000 (gantry rolls back to earlier images)."
  }
}

variable "ecr_untagged_expiry_days" {
  description = "Days after which untagged images (left by rebuilt layers) expire."
  type        = number
  default     = 7

  validation {
    condition     = var.ecr_untagged_expiry_days >= 1 && var.ecr_untagged_expiry_days <= 365
    error_message = "ecr_untagged_expiry_days must be from 1 to 365."
  }
}

variable "ecr_force_delete" {
  description = "Let a destroy delete repositories that still hold images (true is convenient for dev; keep false for prod)."
  type        = bool
  default     = false
}

# --- Database --------------------------------------------------------------------------------

variable "database_mode" {
  description = "Where PostgreSQL runs: rds (Amazon RDS in the private subnets, password in Secrets Manager), chart (inside the cluster, deployed by gantry's charts input from examples/app/charts/postgres; Terraform creates no database) or helm (the Bitnami chart installed by Terraform's Helm provider: the older alternative to chart)."
  type        = string
  default     = "rds"

  validation {
    condition     = contains(["rds", "chart", "helm"], var.database_mode)
    error_message = "database_mode must be one of rds, chart, helm."
  }

  validation {
    condition     = var.database_mode == "rds" || var.environment != "prod"
    error_message = "database_mode must be rds for prod (chart and helm are allowed for dev and staging only)."
  }
}

variable "database_name" {
  description = "Name of the application's database."
  type        = string
  default     = "app"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_name)) && !contains(["postgres", "template0", "template1", "rdsadmin"], var.database_name)
    error_message = "database_name must start with a lower-case letter, hold lower-case letters, digits and _ (at most 63), and not be postgres, template0, template1 or rdsadmin."
  }
}

variable "database_username" {
  description = "Master user name of the database (its password is generated and never leaves Secrets Manager or the Kubernetes secret)."
  type        = string
  default     = "app_admin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_username)) && !contains(["postgres", "admin", "rdsadmin", "rds_superuser", "public"], var.database_username)
    error_message = "database_username must start with a lower-case letter, hold lower-case letters, digits and _ (at most 63), and not be a reserved name (postgres, admin, rdsadmin, rds_superuser, public)."
  }
}

variable "database_engine_version" {
  description = "PostgreSQL version on RDS: a major version (e.g. 16, minor upgrades automatic) or MAJOR.MINOR."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^1[3-7](\\.[0-9]+)?$", var.database_engine_version))
    error_message = "database_engine_version must be a PostgreSQL major version from 13 to 17, optionally with a minor version, e.g. 16 or 16.4."
  }
}

variable "database_instance_class" {
  description = "RDS instance class, e.g. db.t4g.micro for dev, db.m7g.large for prod."
  type        = string
  default     = "db.t4g.micro"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.database_instance_class))
    error_message = "database_instance_class must be an RDS instance class such as db.t4g.micro or db.m7g.large."
  }
}

variable "database_allocated_storage" {
  description = "Initial gp3 storage of the RDS instance in GiB."
  type        = number
  default     = 20

  validation {
    condition     = var.database_allocated_storage >= 20 && var.database_allocated_storage <= 16384
    error_message = "database_allocated_storage must be from 20 to 16384 GiB."
  }
}

variable "database_max_allocated_storage" {
  description = "Upper limit of RDS storage autoscaling in GiB; 0 disables autoscaling."
  type        = number
  default     = 100

  validation {
    condition     = var.database_max_allocated_storage == 0 || (var.database_max_allocated_storage >= var.database_allocated_storage && var.database_max_allocated_storage <= 16384)
    error_message = "database_max_allocated_storage must be 0 (no autoscaling) or from database_allocated_storage to 16384 GiB."
  }
}

variable "database_multi_az" {
  description = "Run a standby RDS instance in a second availability zone (doubles the instance cost)."
  type        = bool
  default     = false
}

variable "database_backup_retention_days" {
  description = "Days RDS keeps automated backups; prod needs at least 7."
  type        = number
  default     = 7

  validation {
    condition     = var.database_backup_retention_days >= 1 && var.database_backup_retention_days <= 35 && (var.environment != "prod" || var.database_backup_retention_days >= 7)
    error_message = "database_backup_retention_days must be from 1 to 35, and from 7 to 35 for prod."
  }
}

variable "database_deletion_protection" {
  description = "Refuse to delete the RDS instance (turn off deliberately before a destroy); must be true for prod."
  type        = bool
  default     = true

  validation {
    condition     = var.environment != "prod" || var.database_deletion_protection
    error_message = "database_deletion_protection must be true for prod (allowed values: true, or false only for dev and staging)."
  }
}

variable "postgres_chart_version" {
  description = "Version of the bitnami/postgresql Helm chart used when database_mode is helm."
  type        = string
  default     = "16.7.27"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.postgres_chart_version))
    error_message = "postgres_chart_version must be an exact chart version MAJOR.MINOR.PATCH, e.g. 16.7.27."
  }
}

variable "postgres_namespace" {
  description = "Kubernetes namespace of the in-cluster PostgreSQL when database_mode is helm."
  type        = string
  default     = "database"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.postgres_namespace))
    error_message = "postgres_namespace must be a Kubernetes namespace name: lower-case letters, digits and -, at most 63."
  }
}

variable "postgres_storage_class" {
  description = "StorageClass of the in-cluster PostgreSQL's volume when database_mode is helm (needs a CSI driver such as the EBS CSI add-on). Empty: no volume, data is lost when the pod restarts."
  type        = string
  default     = ""

  validation {
    condition     = var.postgres_storage_class == "" || can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.postgres_storage_class))
    error_message = "postgres_storage_class must be empty (no persistence) or a Kubernetes StorageClass name such as gp3."
  }
}
