# Names and lookups shared by the infra layer. The names are the contract with
# terraform/bootstrap, whose IAM policies are scoped to them: cluster PROJECT-ENV, IAM roles
# PROJECT-ENV-eks-*, repositories PROJECT/ENV/*, RDS PROJECT-ENV-*, logs /aws/eks/PROJECT-ENV/*.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  name      = "${var.project}-${var.environment}"
  partition = data.aws_partition.current.partition
  azs       = slice(data.aws_availability_zones.available.names, 0, var.availability_zone_count)

  deploy_role_name = var.deploy_role_name != "" ? var.deploy_role_name : "${local.name}-deploy"
  deploy_role_arn  = "arn:${local.partition}:iam::${data.aws_caller_identity.current.account_id}:role/${local.deploy_role_name}"

  # Graviton instance families (t4g, m7g, c7gn...) need the ARM image.
  arm_nodes = can(regex("^[a-z]+[0-9]+g[a-z]*\\.", var.node_instance_types[0]))

  use_rds   = var.database_mode == "rds"
  use_helm  = var.database_mode == "helm"
  use_chart = var.database_mode == "chart"
}
