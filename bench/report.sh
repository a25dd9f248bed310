#!/usr/bin/env bash
# Rendering time and size of the largest job summary (a 2,000-resource Terraform plan, a
# 400-object dry run, 3,000 manifest documents) and of its pull-request comment, against
# GitHub's limits (1 MiB summary, 65,536-character comment), as a ratio of the limit.
# Runs the ignored `measure` test of tests/report_render.rs.
# Usage: bash bench/report.sh [--release]   (default: the debug build the tests already use)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gantry-target}
profile=()
[ "${1:-}" = "--release" ] && profile=(--release)
cargo test --quiet --jobs 2 "${profile[@]}" --test report_render -- --ignored --exact measure --nocapture 2>&1 \
  | grep -E '^(summary|comment)'
