# Terraform and provider versions of the bootstrap layer, and the AWS provider it uses.
# The bootstrap layer keeps its own state locally (it creates the bucket the other layers use);
# see terraform/README.md for moving it into the bucket afterwards.
terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "= 5.100.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      managed-by = "gantry"
      layer      = "bootstrap"
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}
