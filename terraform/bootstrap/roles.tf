# One deploy role per environment and a shared read-only plan role, with least-privilege
# policies for what gantry does with them: Terraform state of its own environment, the infra
# layer's resources (named PROJECT-ENV..., IAM roles PROJECT-ENV-eks-*), ECR push to
# PROJECT/ENV/* and EKS describe + access entries of the cluster PROJECT-ENV.

locals {
  state_bucket_arn = aws_s3_bucket.state.arn
  # Where the S3 backend keeps each workspace's state: PREFIX/WORKSPACE/KEY (+ KEY.tflock).
  state_objects = { for e in var.environments : e => "${local.state_bucket_arn}/${var.workspace_key_prefix}/${e}/*" }

  # Names the infra layer gives the resources of an environment (see terraform/infra/main.tf).
  names = {
    for e in var.environments : e => {
      prefix      = "${var.project}-${e}"
      cluster_arn = "arn:${local.partition}:eks:${var.region}:${local.account_id}:cluster/${var.project}-${e}"
      eks_sub     = "arn:${local.partition}:eks:${var.region}:${local.account_id}:*/${var.project}-${e}/*"
      ecr         = "arn:${local.partition}:ecr:${var.region}:${local.account_id}:repository/${var.project}/${e}/*"
      iam_roles   = "arn:${local.partition}:iam::${local.account_id}:role/${var.project}-${e}-eks-*"
      rds         = "arn:${local.partition}:rds:${var.region}:${local.account_id}"
      log_group   = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/eks/${var.project}-${e}/*"
    }
  }

  # The AWS managed policies the infra layer may attach to the roles it creates.
  attachable_policies = [for p in [
    "AmazonEKSClusterPolicy",
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    "service-role/AmazonEBSCSIDriverPolicy",
  ] : "arn:${local.partition}:iam::aws:policy/${p}"]

  # EC2 resource IDs are random, so EC2 cannot be scoped by ARN: destructive actions require the
  # environment's tags, creations are limited to the region.
  ec2_create_actions = [
    "ec2:AllocateAddress",
    "ec2:AssociateRouteTable",
    "ec2:AttachInternetGateway",
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateInternetGateway",
    "ec2:CreateNatGateway",
    "ec2:CreateNetworkAcl",
    "ec2:CreateNetworkAclEntry",
    "ec2:CreateRoute",
    "ec2:CreateRouteTable",
    "ec2:CreateSecurityGroup",
    "ec2:CreateSubnet",
    "ec2:CreateVpc",
    "ec2:ModifySubnetAttribute",
    "ec2:ModifyVpcAttribute",
    "ec2:ReplaceNetworkAclAssociation",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
  ]
  ec2_destroy_actions = [
    "ec2:CreateTags",
    "ec2:DeleteInternetGateway",
    "ec2:DeleteNatGateway",
    "ec2:DeleteNetworkAcl",
    "ec2:DeleteNetworkAclEntry",
    "ec2:DeleteRoute",
    "ec2:DeleteRouteTable",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteSubnet",
    "ec2:DeleteTags",
    "ec2:DeleteVpc",
    "ec2:DetachInternetGateway",
    "ec2:DisassociateAddress",
    "ec2:DisassociateRouteTable",
    "ec2:ModifySecurityGroupRules",
    "ec2:ReleaseAddress",
    "ec2:ReplaceNetworkAclEntry",
    "ec2:ReplaceRoute",
  ]
}

# ---------------------------------------------------------------------------------------------
# Deploy roles (DEPLOY_ROLE_ARN of each GitHub environment)
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "deploy" {
  for_each = var.environments

  name                 = "${var.project}-${each.key}-deploy"
  description          = "gantry deploys ${each.key} from ${var.github_repository} (GitHub environment ${each.key} only)."
  assume_role_policy   = data.aws_iam_policy_document.deploy_trust[each.key].json
  max_session_duration = var.max_session_duration

  tags = {
    environment = each.key
  }
}

data "aws_iam_policy_document" "deploy" {
  for_each = var.environments

  # Terraform state of this environment's workspace only, and its lock file.
  statement {
    sid       = "StateList"
    actions   = ["s3:ListBucket"]
    resources = [local.state_bucket_arn]
  }
  statement {
    sid       = "StateObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.state_objects[each.key]]
  }

  # ECR: push the application's images, and manage the repositories the infra layer creates.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid = "EcrRepositories"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:CreateRepository",
      "ecr:DeleteLifecyclePolicy",
      "ecr:DeleteRepository",
      "ecr:DescribeImages",
      "ecr:DescribeRepositories",
      "ecr:GetDownloadUrlForLayer",
      "ecr:GetLifecyclePolicy",
      "ecr:GetRepositoryPolicy",
      "ecr:InitiateLayerUpload",
      "ecr:ListImages",
      "ecr:ListTagsForResource",
      "ecr:PutImage",
      "ecr:PutImageScanningConfiguration",
      "ecr:PutImageTagMutability",
      "ecr:PutLifecyclePolicy",
      "ecr:TagResource",
      "ecr:UntagResource",
      "ecr:UploadLayerPart",
    ]
    resources = [local.names[each.key].ecr]
  }

  # EKS: the environment's cluster, its node groups, add-ons and access entries.
  statement {
    sid       = "EksCluster"
    actions   = ["eks:*"]
    resources = [local.names[each.key].cluster_arn, local.names[each.key].eks_sub]
  }
  statement {
    # Lists the AWS-defined access policies; associating them is covered above (access entries).
    sid       = "EksListAccessPolicies"
    actions   = ["eks:ListAccessPolicies"]
    resources = ["*"]
  }

  # IAM: the cluster, node and EBS CSI driver roles PROJECT-ENV-eks-*, with only EKS's managed
  # policies.
  statement {
    sid = "IamRoles"
    actions = [
      "iam:CreateRole",
      "iam:DeleteRole",
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole",
      "iam:ListRolePolicies",
      "iam:TagRole",
      "iam:UntagRole",
      "iam:UpdateAssumeRolePolicy",
      "iam:UpdateRole",
      "iam:UpdateRoleDescription",
    ]
    resources = [local.names[each.key].iam_roles]
  }
  statement {
    sid       = "IamAttachEksPolicies"
    actions   = ["iam:AttachRolePolicy", "iam:DetachRolePolicy"]
    resources = [local.names[each.key].iam_roles]

    condition {
      test     = "ArnEquals"
      variable = "iam:PolicyARN"
      values   = local.attachable_policies
    }
  }
  statement {
    sid       = "IamPassRolesToEks"
    actions   = ["iam:PassRole"]
    resources = [local.names[each.key].iam_roles]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["eks.amazonaws.com", "ec2.amazonaws.com", "pods.eks.amazonaws.com"]
    }
  }
  statement {
    sid       = "IamServiceLinkedRoles"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["eks.amazonaws.com", "eks-nodegroup.amazonaws.com", "rds.amazonaws.com", "autoscaling.amazonaws.com"]
    }
  }

  # EC2 networking: read everything, create in the region, destroy only this environment's.
  statement {
    sid       = "Ec2Read"
    actions   = ["ec2:Describe*", "ec2:Get*"]
    resources = ["*"]
  }
  statement {
    sid       = "Ec2Create"
    actions   = local.ec2_create_actions
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }
  statement {
    sid       = "Ec2TagOnCreate"
    actions   = ["ec2:CreateTags"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = [for a in local.ec2_create_actions : trimprefix(a, "ec2:")]
    }
  }
  statement {
    sid       = "Ec2ChangeOwn"
    actions   = local.ec2_destroy_actions
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/environment"
      values   = [each.key]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/managed-by"
      values   = ["gantry"]
    }
  }

  # RDS PostgreSQL named PROJECT-ENV-*, with its master password kept by Secrets Manager.
  statement {
    sid       = "RdsRead"
    actions   = ["rds:Describe*", "rds:ListTagsForResource"]
    resources = ["*"]
  }
  statement {
    sid     = "RdsOwn"
    actions = ["rds:*"]
    resources = [
      "${local.names[each.key].rds}:db:${local.names[each.key].prefix}-*",
      "${local.names[each.key].rds}:subgrp:${local.names[each.key].prefix}-*",
      "${local.names[each.key].rds}:snapshot:${local.names[each.key].prefix}-*",
      "${local.names[each.key].rds}:pg:default.*",
      "${local.names[each.key].rds}:og:default:*",
    ]
  }
  statement {
    sid = "RdsManagedSecret"
    actions = [
      "secretsmanager:CreateSecret",
      "secretsmanager:DeleteSecret",
      "secretsmanager:DescribeSecret",
      "secretsmanager:TagResource",
    ]
    resources = ["arn:${local.partition}:secretsmanager:${var.region}:${local.account_id}:secret:rds!*"]
  }
  statement {
    sid       = "KmsForAwsManagedKeys"
    actions   = ["kms:DescribeKey", "kms:CreateGrant"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["rds.${var.region}.amazonaws.com", "secretsmanager.${var.region}.amazonaws.com"]
    }
  }

  # CloudWatch Logs: the cluster's control-plane log group.
  statement {
    sid       = "LogsRead"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["*"]
  }
  statement {
    sid = "LogsOwn"
    actions = [
      "logs:CreateLogGroup",
      "logs:DeleteLogGroup",
      "logs:DeleteRetentionPolicy",
      "logs:ListTagsForResource",
      "logs:ListTagsLogGroup",
      "logs:PutRetentionPolicy",
      "logs:TagResource",
      "logs:UntagResource",
    ]
    resources = [local.names[each.key].log_group]
  }
}

resource "aws_iam_role_policy" "deploy" {
  for_each = var.environments

  name   = "gantry-deploy"
  role   = aws_iam_role.deploy[each.key].id
  policy = data.aws_iam_policy_document.deploy[each.key].json
}

# ---------------------------------------------------------------------------------------------
# Plan role (PLAN_ROLE_ARN): read-only, for the pull-request plans of every environment.
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "plan" {
  count = var.create_plan_role ? 1 : 0

  name                 = "${var.project}-plan"
  description          = "gantry plans (read-only) pull requests of ${var.github_repository}."
  assume_role_policy   = data.aws_iam_policy_document.plan_trust.json
  max_session_duration = var.max_session_duration
}

data "aws_iam_policy_document" "plan" {
  # Read every environment's state; write only the lock files (plans hold the lock).
  statement {
    sid       = "StateList"
    actions   = ["s3:ListBucket"]
    resources = [local.state_bucket_arn]
  }
  statement {
    sid       = "StateRead"
    actions   = ["s3:GetObject"]
    resources = values(local.state_objects)
  }
  statement {
    sid       = "StateLock"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = [for e in var.environments : "${local.state_bucket_arn}/${var.workspace_key_prefix}/${e}/${var.state_key}.tflock"]
  }

  statement {
    sid = "ReadInfrastructure"
    actions = [
      "ec2:Describe*",
      "ec2:Get*",
      "ecr:DescribeImages",
      "ecr:DescribeRepositories",
      "ecr:GetAuthorizationToken",
      "ecr:GetLifecyclePolicy",
      "ecr:GetRepositoryPolicy",
      "ecr:ListTagsForResource",
      "eks:Describe*",
      "eks:List*",
      "logs:DescribeLogGroups",
      "logs:ListTagsForResource",
      "logs:ListTagsLogGroup",
      "rds:Describe*",
      "rds:ListTagsForResource",
      "secretsmanager:DescribeSecret",
      "kms:DescribeKey",
    ]
    resources = ["*"]
  }
  statement {
    sid = "ReadInfraRoles"
    actions = [
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole",
      "iam:ListRolePolicies",
    ]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/${var.project}-*-eks-*"]
  }
}

resource "aws_iam_role_policy" "plan" {
  count = var.create_plan_role ? 1 : 0

  name   = "gantry-plan"
  role   = aws_iam_role.plan[0].id
  policy = data.aws_iam_policy_document.plan.json
}
