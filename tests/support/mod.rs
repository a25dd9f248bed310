//! Shared test support for integration tests; include with `mod support;`.
#![allow(dead_code)]

pub mod apiproxy;
pub mod cluster;
pub mod deploy;
pub mod postgres;
pub mod registry;

/// A finished process's status and both output streams, for assertion messages.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

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

/// Puts an executable `tool` in `bin` that appends its name and arguments to `log` and fails:
/// a test that must run no tool puts it first on PATH and checks `log` was never written.
pub fn failing_spy(bin: &std::path::Path, tool: &str, log: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let spy = bin.join(tool);
    std::fs::write(
        &spy,
        format!("#!/bin/sh\necho \"$0 $@\" >> {}\nexit 1\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&spy, std::fs::Permissions::from_mode(0o755)).unwrap();
}
