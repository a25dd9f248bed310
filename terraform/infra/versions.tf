# Terraform, provider versions and the remote state backend of the infra layer. The backend is a
# partial configuration: bucket, key, region and workspace_key_prefix come from gantry's
# terraform-backend-config input (the bootstrap layer outputs the line to paste). Each
# environment's state is a workspace of the same name, which gantry selects.
terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "= 5.100.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "= 2.17.0"
    }
  }

  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      environment = var.environment
      managed-by  = "gantry"
      project     = var.project
    })
  }
}

# Used only when database_mode is helm (the in-cluster PostgreSQL chart); with rds it is never
# contacted. The token is short-lived and read at each plan and apply.
provider "helm" {
  kubernetes {
    host                   = aws_eks_cluster.this.endpoint
    cluster_ca_certificate = base64decode(aws_eks_cluster.this.certificate_authority[0].data)
    token                  = one(data.aws_eks_cluster_auth.this[*].token)
  }
}
