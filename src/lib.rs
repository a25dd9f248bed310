//! gantry: one GitHub Action step from a commit to a healthy rollout on Amazon EKS.
//!
//! The crate is split into pure decision logic ([`config`], [`pipeline`], [`report`]) and thin
//! adapters ([`adapters`]) to the outside world; [`app`] runs one invocation end to end and
//! [`cli`] is the command-line front door.

pub mod adapters;
pub mod app;
pub mod cancel;
pub mod charts;
pub mod cli;
pub mod config;
pub mod context;
pub mod image;
pub mod manifests;
pub mod pipeline;
pub mod plan;
pub mod release;
pub mod report;
pub mod retry;
pub mod rollout;
