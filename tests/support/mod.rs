//! Shared test support for integration tests; include with `mod support;`.
#![allow(dead_code)]

pub mod apiproxy;
pub mod cluster;
pub mod deploy;
pub mod registry;

/// The test bed's moto endpoint (ECR, EKS, STS); unset fails the test with how to start it.
pub fn moto_endpoint() -> String {
    std::env::var("GANTRY_TEST_MOTO_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "GANTRY_TEST_MOTO_ENDPOINT is not set: start the test bed with `bash .ci/testbed up` \
                 and `source /var/tmp/gantry-testbed/env` before running these tests"
            )
        })
}
