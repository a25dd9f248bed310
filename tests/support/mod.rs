//! Shared test support for integration tests; include with `mod support;`.
#![allow(dead_code)]

pub mod apiproxy;
pub mod cluster;
pub mod deploy;
pub mod registry;
