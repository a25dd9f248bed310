# PostgreSQL, the external state the application needs. rds (default): Amazon RDS in the private
# subnets, reachable only from the cluster's nodes, with its master password generated and kept
# by Secrets Manager (manage_master_user_password), so no password is ever in state or outputs.
# helm (dev/staging only): the Bitnami chart in the cluster, password in a Kubernetes secret.

resource "aws_db_subnet_group" "postgres" {
  count = local.use_rds ? 1 : 0

  name        = "${local.name}-postgres"
  description = "Private subnets of ${local.name}'s PostgreSQL."
  subnet_ids  = aws_subnet.private[*].id
}

resource "aws_security_group" "postgres" {
  count = local.use_rds ? 1 : 0

  name        = "${local.name}-postgres"
  description = "PostgreSQL of ${local.name}: port 5432 from the cluster's nodes only."
  vpc_id      = aws_vpc.this.id

  tags = {
    Name = "${local.name}-postgres"
  }
}

# Managed node groups without a launch template use the cluster security group.
resource "aws_vpc_security_group_ingress_rule" "postgres_from_nodes" {
  count = local.use_rds ? 1 : 0

  security_group_id            = aws_security_group.postgres[0].id
  referenced_security_group_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from the EKS cluster"
}

resource "aws_db_instance" "postgres" {
  count = local.use_rds ? 1 : 0

  identifier     = "${local.name}-postgres"
  engine         = "postgres"
  engine_version = var.database_engine_version
  instance_class = var.database_instance_class

  allocated_storage     = var.database_allocated_storage
  max_allocated_storage = var.database_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name                     = var.database_name
  username                    = var.database_username
  manage_master_user_password = true

  db_subnet_group_name   = aws_db_subnet_group.postgres[0].name
  vpc_security_group_ids = [aws_security_group.postgres[0].id]
  publicly_accessible    = false
  multi_az               = var.database_multi_az

  backup_retention_period     = var.database_backup_retention_days
  backup_window               = "03:00-04:00"
  maintenance_window          = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = var.environment != "prod"
  copy_tags_to_snapshot       = true

  deletion_protection       = var.database_deletion_protection
  skip_final_snapshot       = var.environment != "prod"
  final_snapshot_identifier = var.environment == "prod" ? "${local.name}-postgres-final" : null
}

resource "helm_release" "postgres" {
  count = local.use_helm ? 1 : 0

  name             = "postgresql"
  namespace        = var.postgres_namespace
  create_namespace = true
  repository       = "oci://registry-1.docker.io/bitnamicharts"
  chart            = "postgresql"
  version          = var.postgres_chart_version
  wait             = true
  timeout          = 600

  values = [yamlencode({
    # Bitnami moved its free images to bitnamilegacy in 2025.
    image  = { repository = "bitnamilegacy/postgresql" }
    global = { security = { allowInsecureImages = true } }
    auth = {
      database = var.database_name
      username = var.database_username
    }
    primary = {
      persistence = {
        enabled      = var.postgres_storage_class != ""
        storageClass = var.postgres_storage_class
        size         = "${var.database_allocated_storage}Gi"
      }
    }
  })]

  depends_on = [
    aws_eks_node_group.default,
    aws_eks_access_policy_association.deploy,
  ]
}

locals {
  database = local.use_rds ? {
    host         = aws_db_instance.postgres[0].address
    port         = aws_db_instance.postgres[0].port
    secret_arn   = aws_db_instance.postgres[0].master_user_secret[0].secret_arn
    secret_name  = replace(element(split(":secret:", aws_db_instance.postgres[0].master_user_secret[0].secret_arn), 1), "/-[A-Za-z0-9]{6}$/", "")
    secret_store = "secretsmanager"
    } : {
    # chart: the release `postgres` of examples/app/charts/postgres that gantry deploys (its
    # Service and Secret are named after the release); helm: the Bitnami release `postgresql`.
    host         = local.use_chart ? "postgres.${var.postgres_namespace}.svc.cluster.local" : "postgresql.${var.postgres_namespace}.svc.cluster.local"
    port         = 5432
    secret_arn   = null
    secret_name  = local.use_chart ? "postgres" : "postgresql"
    secret_store = "kubernetes"
  }
}
