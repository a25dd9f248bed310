#!/usr/bin/env bash
# Start-up time of `gantry --version` side by side with the plain tools doing as little
# (`true`, `terraform version`), as ratios; and the action image's size against its parts.
# Usage: bash bench/startup.sh [RUNS]   (needs the test bed for the image: bash .ci/testbed up)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gantry-target}
export CHECKPOINT_DISABLE=1
cargo build --release --quiet --bin gantry
gantry=$CARGO_TARGET_DIR/release/gantry
terraform=$(command -v terraform)

# Mean wall time of one run of "$@" over $runs runs, in microseconds (bash's clock, no forks
# besides the measured command itself).
measure() {
  local start end i
  "$@" >/dev/null 2>&1 || true   # warm the page cache
  start=$EPOCHREALTIME
  for ((i = 0; i < runs; i++)); do "$@" >/dev/null 2>&1; done
  end=$EPOCHREALTIME
  awk -v s="$start" -v e="$end" -v n="$runs" 'BEGIN { printf "%.0f", (e - s) * 1e6 / n }'
}

t_true=$(measure /bin/true)
t_gantry=$(measure "$gantry" --version)
t_tf=$(measure "$terraform" version)
t_tf_runs=$runs
echo "start-up, mean of $runs runs (same machine, same moment):"
printf '  %-22s %8s us\n' "true" "$t_true" "gantry --version" "$t_gantry" "terraform version" "$t_tf"
awk -v g="$t_gantry" -v t="$t_true" -v f="$t_tf" 'BEGIN {
  printf "  ratio gantry / true:              %.2fx\n", g / t
  printf "  ratio gantry / terraform version: %.3fx\n", g / f
}'
: "$t_tf_runs"

docker=${GANTRY_TEST_DOCKER:-/usr/bin/docker}
if "$docker" info >/dev/null 2>&1; then
  # The container contract test builds the real Dockerfile on the local stand-in bases.
  cargo test --quiet --test container_action the_image_is_small -- --exact the_image_is_small_and_starts_as_nonroot_too >/dev/null
  size=$("$docker" image inspect --format '{{.Size}}' gantry:contract-test)
  base=$("$docker" image inspect --format '{{.Size}}' gcr.io/distroless/cc-debian12:debug)
  echo "image gantry:contract-test (on the local stand-in of the distroless base):"
  awk -v s="$size" -v b="$base" -v t="$(stat -c %s "$terraform")" -v g="$(stat -c %s "$gantry")" 'BEGIN {
    mb = 1024 * 1024
    printf "  total %.1f MB (goal <= 150 MB): base %.1f MB + terraform %.1f MB + gantry %.1f MB\n", s / mb, b / mb, t / mb, g / mb
    printf "  ratio image / plain terraform binary: %.2fx\n", s / t
  }'
else
  echo "image: Docker is not running; start it with: bash .ci/testbed up"
fi
