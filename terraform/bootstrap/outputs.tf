# What to paste into GitHub (variables) and into the workflows (terraform-backend-config).

output "deploy_role_arns" {
  description = "DEPLOY_ROLE_ARN for each GitHub environment (set it as an environment variable of that environment)."
  value       = { for e, role in aws_iam_role.deploy : e => role.arn }
}

output "plan_role_arn" {
  description = "PLAN_ROLE_ARN (a repository variable): the read-only role of pull-request plans; null when create_plan_role is false."
  value       = var.create_plan_role ? aws_iam_role.plan[0].arn : null
}

output "aws_region" {
  description = "AWS_REGION (a repository variable)."
  value       = var.region
}

output "state_bucket" {
  description = "Name of the S3 bucket holding the infra layer's state."
  value       = aws_s3_bucket.state.bucket
}

output "backend_config" {
  description = "Settings of the infra layer's backend \"s3\" block, as a map."
  value = {
    bucket               = aws_s3_bucket.state.bucket
    key                  = var.state_key
    region               = var.region
    workspace_key_prefix = var.workspace_key_prefix
    encrypt              = "true"
  }
}

output "terraform_backend_config" {
  description = "The value of gantry's terraform-backend-config input, ready to paste into the workflows."
  value = join(",", [
    "bucket=${aws_s3_bucket.state.bucket}",
    "key=${var.state_key}",
    "region=${var.region}",
    "workspace_key_prefix=${var.workspace_key_prefix}",
    "encrypt=true",
  ])
}

output "github_oidc_provider_arn" {
  description = "ARN of the GitHub OIDC identity provider the roles trust."
  value       = local.github_oidc_provider_arn
}
