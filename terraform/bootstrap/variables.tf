# Inputs of the bootstrap layer. This file uses no provider, so the test in
# tests/reference_stack.rs runs its validation blocks with Terraform alone.

variable "region" {
  description = "AWS region of the state bucket and of the stacks gantry deploys, e.g. eu-west-1."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1 or us-east-1."
  }
}

variable "project" {
  description = "Name prefix of every resource (state bucket, roles, clusters, repositories); must match `project` in terraform/infra."
  type        = string
  default     = "gantry"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.project))
    error_message = "project must be 2 to 20 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "github_repository" {
  description = "The GitHub repository allowed to assume the roles, as OWNER/REPO (e.g. acme/shop)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$", var.github_repository))
    error_message = "github_repository must be OWNER/REPO, e.g. acme/shop (no URL, no .git, no wildcard)."
  }
}

variable "environments" {
  description = "Environments that get a deploy role; each must be a GitHub environment of the repository of the same name."
  type        = set(string)
  default     = ["dev", "staging", "prod"]

  validation {
    condition     = length(var.environments) > 0 && alltrue([for e in var.environments : contains(["dev", "staging", "prod"], e)])
    error_message = "environments must be a non-empty subset of dev, staging, prod."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the GitHub OIDC identity provider (token.actions.githubusercontent.com). Set false when the account already has one (an account can have only one per URL)."
  type        = bool
  default     = true
}

variable "create_plan_role" {
  description = "Create the read-only plan role that pull requests of the repository assume (PLAN_ROLE_ARN)."
  type        = bool
  default     = true
}

variable "state_bucket_name" {
  description = "Name of the S3 bucket for Terraform state. Empty: PROJECT-tfstate-ACCOUNT_ID-REGION."
  type        = string
  default     = ""

  validation {
    condition     = var.state_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket_name))
    error_message = "state_bucket_name must be empty (derived name) or 3 to 63 characters of lower-case letters, digits, dots and hyphens."
  }
}

variable "state_key" {
  description = "Object key of the infra layer's state inside each environment's workspace folder."
  type        = string
  default     = "infra/terraform.tfstate"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9/._-]*\\.tfstate$", var.state_key))
    error_message = "state_key must be a relative object key ending in .tfstate, e.g. infra/terraform.tfstate."
  }
}

variable "workspace_key_prefix" {
  description = "Folder of the state bucket under which the S3 backend stores one state per workspace; gantry selects the workspace named after the environment."
  type        = string
  default     = "workspaces"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]*$", var.workspace_key_prefix))
    error_message = "workspace_key_prefix must be lower-case letters, digits and hyphens (no slash), e.g. workspaces."
  }
}

variable "state_noncurrent_version_days" {
  description = "Days a replaced state version is kept before S3 deletes it (versioning keeps every state otherwise)."
  type        = number
  default     = 90

  validation {
    condition     = var.state_noncurrent_version_days >= 7 && var.state_noncurrent_version_days <= 3650
    error_message = "state_noncurrent_version_days must be from 7 to 3650."
  }
}

variable "max_session_duration" {
  description = "Longest session, in seconds, of the deploy and plan roles (a cluster and database creation can take 30 minutes)."
  type        = number
  default     = 7200

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be from 3600 to 43200 seconds."
  }
}

variable "tags" {
  description = "Extra tags for every resource (managed-by = gantry is always added)."
  type        = map(string)
  default     = {}
}
