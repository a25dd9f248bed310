//! Shared test support for integration tests; include with `mod support;`.
#![allow(dead_code)]

pub mod deploy;
pub mod fake_apiserver;
pub mod registry;
