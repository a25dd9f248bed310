# A stand-in infrastructure stack for the demo: only Terraform's built-in provider, so it runs
# anywhere. Its outputs have the names the real stack in terraform/infra gives them.
terraform {
  required_version = ">= 1.10"
}

variable "replicas" {
  description = "How many replicas of each workload the environment runs."
  type        = number
  default     = 1

  validation {
    condition     = var.replicas >= 1 && var.replicas <= 10
    error_message = "replicas must be from 1 to 10."
  }
}

resource "terraform_data" "repositories" {
  input = {
    prefix = "gantry-demo/${terraform.workspace}"
  }
}

resource "terraform_data" "database" {
  input = {
    endpoint = "postgres.${terraform.workspace}.internal:5432"
    name     = "app"
  }
}

output "frontend_repository" {
  description = "Repository of the frontend image."
  value       = "${terraform_data.repositories.output.prefix}/frontend"
}

output "backend_repository" {
  description = "Repository of the backend image."
  value       = "${terraform_data.repositories.output.prefix}/backend"
}

output "database_endpoint" {
  description = "Host and port of the application database."
  value       = terraform_data.database.output.endpoint
}

output "replicas" {
  description = "Replicas per workload."
  value       = var.replicas
}

output "database_password" {
  description = "Password of the application database user."
  value       = substr(sha256("${terraform.workspace}-${terraform_data.database.id}"), 0, 24)
  sensitive   = true
}
