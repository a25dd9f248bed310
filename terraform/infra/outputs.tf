# Outputs of the infra layer, named so gantry consumes them directly: ${tf.backend_repository_url}
# and ${tf.frontend_repository_url} in `images`, ${tf.cluster_name} in `cluster-name`, and the
# database_* outputs as ${tf.NAME} placeholders in the application's manifests. No output holds
# a secret: the database password stays in Secrets Manager (or the Kubernetes secret).

output "environment" {
  description = "The environment this state describes (dev, staging or prod)."
  value       = var.environment
}

output "region" {
  description = "AWS region of the cluster, the repositories and the database."
  value       = var.region
}

output "vpc_id" {
  description = "ID of the environment's VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets (nodes, database), one per availability zone."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "IDs of the public subnets (load balancers, NAT gateways), one per availability zone."
  value       = aws_subnet.public[*].id
}

output "nat_public_ips" {
  description = "Public IPv4 addresses the cluster's outbound traffic comes from (for allow-lists elsewhere)."
  value       = aws_eip.nat[*].public_ip
}

output "cluster_name" {
  description = "Name of the EKS cluster: gantry's cluster-name input."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "URL of the EKS cluster's Kubernetes API."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 certificate authority of the cluster's API (public data, for kubeconfig files)."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_security_group_id" {
  description = "Security group EKS created for the cluster and its managed nodes."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "deploy_role_arn" {
  description = "IAM role that has an access entry (and the deploy_access_policy) in the cluster."
  value       = aws_eks_access_entry.deploy.principal_arn
}

output "backend_repository_url" {
  description = "ECR repository URL of the backend image: gantry's images[].repository for backend."
  value       = aws_ecr_repository.app["backend"].repository_url
}

output "frontend_repository_url" {
  description = "ECR repository URL of the frontend image: gantry's images[].repository for frontend."
  value       = aws_ecr_repository.app["frontend"].repository_url
}

output "repository_urls" {
  description = "ECR repository URL of every image, by name."
  value       = { for name, repo in aws_ecr_repository.app : name => repo.repository_url }
}

output "database_mode" {
  description = "Where PostgreSQL runs: rds or helm."
  value       = var.database_mode
}

output "database_endpoint" {
  description = "Host name of PostgreSQL (RDS address, or the in-cluster service name)."
  value       = local.database.host
}

output "database_port" {
  description = "TCP port of PostgreSQL."
  value       = local.database.port
}

output "database_name" {
  description = "Name of the application's database."
  value       = var.database_name
}

output "database_username" {
  description = "Master user name of the database (the password is in the secret named by database_secret_name)."
  value       = var.database_username
}

output "database_secret_name" {
  description = "Where the database password is: the Secrets Manager secret name (rds; keys username and password), or the Kubernetes secret in postgres_namespace (helm; key password). A name, not the secret itself."
  value       = local.database.secret_name
}

output "database_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the database credentials (null with helm)."
  value       = local.database.secret_arn
}

output "database_secret_store" {
  description = "Which store database_secret_name refers to: secretsmanager or kubernetes."
  value       = local.database.secret_store
}
