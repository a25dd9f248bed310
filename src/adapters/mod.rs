//! Thin adapters to the world outside gantry: the runner's files and log (and, with their phases, Terraform, Docker, ECR, Kubernetes and GitHub).

pub mod cluster;
pub mod docker;
pub mod ecr;
pub mod eks;
pub mod github;
pub mod helm;
pub mod kube;
pub mod kube_http;
pub mod registry;
pub mod releases;
pub mod runner;
pub mod terraform;
