#!/usr/bin/env bash
# The build phase side by side with the Docker CLI on the same two contexts, in one run:
#   fresh   a new commit: gantry builds both images concurrently and pushes them, against
#           `docker build` + `docker build` + `docker push` + `docker push` (the usual script);
#           every run gets new context content so neither side builds from cache.
#   rerun   the same commit again: gantry finds both commit tags in the registry and builds
#           nothing, against the CLI rebuilding (all steps cached) and pushing (layers exist).
# Both sides set the same three OCI labels; the CLI's fresh run gets its own new content.
# The variants are interleaved; medians are compared. Also gantry's peak RSS (/usr/bin/time -v).
# Pushes go to the test bed's plain registry (bash .ci/testbed up).
# Each context also carries a payload file of CONTEXT_MEGABYTES that no step uses: it is sent
# to the daemon like any context (gantry streams it; its peak RSS shows the context is not held).
# Usage: bash bench/build.sh [RUNS] [MEGABYTES_PER_IMAGE] [CONTEXT_MEGABYTES]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-5}
megabytes=${2:-16}
context_megabytes=${3:-64}
[ -f /var/tmp/gantry-testbed/env ] && source /var/tmp/gantry-testbed/env
registry=${GANTRY_TEST_REGISTRY:-127.0.0.1:5000}
base=${GANTRY_TEST_BASE_IMAGE:-gantry-test/busybox:latest}
docker=${GANTRY_TEST_DOCKER:-/usr/bin/docker}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gantry-target}
cargo build --release --quiet --bin gantry
gantry=$CARGO_TARGET_DIR/release/gantry
curl -fsS "http://$registry/v2/" >/dev/null || { echo "bench: no registry at $registry; run bash .ci/testbed up" >&2; exit 1; }
work=$(mktemp -d)
suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
# The images both sides built are removed at the end (they would fill the daemon's disk).
cleanup() {
  rm -rf "$work"
  "$docker" image ls --format '{{.Repository}}:{{.Tag}}' | grep -E "/bench/(api|web)-$suffix:" |
    xargs -r "$docker" image rm --force >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Two contexts, each writing $megabytes of data derived from a stamp file (new each fresh run).
mkdir -p "$work/repo"
for name in api web; do
  mkdir -p "$work/repo/$name"
  head -c $((context_megabytes * 1024 * 1024)) /dev/urandom >"$work/repo/$name/payload.bin"
  cat >"$work/repo/$name/Dockerfile" <<DOCKERFILE
FROM $base
COPY stamp.txt /stamp.txt
RUN head -c $((megabytes * 1024 * 1024)) /dev/urandom > /data.bin && sha256sum /data.bin /stamp.txt > /sums
CMD ["cat", "/sums"]
DOCKERFILE
done
git -C "$work/repo" init -q
git -C "$work/repo" -c user.name=bench -c user.email=bench@example.invalid commit -q --allow-empty -m init

images="- name: api
  repository: bench/api-$suffix
  context: api
- name: web
  repository: bench/web-$suffix
  context: web"

new_commit() {
  for name in api web; do od -An -N16 -tx1 /dev/urandom >"$work/repo/$name/stamp.txt"; done
  git -C "$work/repo" add -A
  git -C "$work/repo" -c user.name=bench -c user.email=bench@example.invalid commit -q -m "run $RANDOM"
}

run_gantry() {
  cd "$work/repo" && "$gantry" deploy --environment bench --phases build --images="$images" \
    --registry-endpoint "$registry" --registry-username bench --registry-password bench \
    --build-concurrency 2
}

# The CLI gets the same three OCI labels gantry sets, so both produce the same images.
run_cli() {
  local tag labels
  tag=$(cat "$work/cli.tag")
  labels=(--label "org.opencontainers.image.revision=$tag" --label "org.opencontainers.image.source=https://github.com/bench/bench"
    --label "org.opencontainers.image.created=$(cat "$work/cli.created")")
  cd "$work/repo" &&
    "$docker" build -q "${labels[@]}" -t "$registry/bench/api-$suffix:cli-$tag" api &&
    "$docker" build -q "${labels[@]}" -t "$registry/bench/web-$suffix:cli-$tag" web &&
    "$docker" push -q "$registry/bench/api-$suffix:cli-$tag" &&
    "$docker" push -q "$registry/bench/web-$suffix:cli-$tag"
}

# Wall time of one run of a variant in milliseconds; a failed run aborts the bench.
measure() {
  local start=$EPOCHREALTIME
  if ! ("run_$1" >"$work/$1.log" 2>&1); then
    echo "bench: the $1 variant failed:" >&2
    tail -20 "$work/$1.log" >&2
    exit 1
  fi
  awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", (e - s) * 1000 }'
}

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for ((i = 0; i < runs; i++)); do
  # Fresh: each side builds new content (a new commit for gantry, new tags for the CLI).
  new_commit
  measure gantry >>"$work/fresh_gantry.times"
  grep -q "reused" "$work/gantry.log" && { echo "bench: a fresh gantry run reused an image" >&2; exit 1; }
  # The CLI's fresh run gets content of its own, so it cannot use what gantry just built.
  for name in api web; do od -An -N16 -tx1 /dev/urandom >"$work/repo/$name/stamp.txt"; done
  od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >"$work/cli.tag"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$work/cli.created" # kept for the rerun: fully cached
  measure cli >>"$work/fresh_cli.times"
  # Rerun of the same commit: gantry reuses, the CLI rebuilds from cache and pushes again.
  measure gantry >>"$work/rerun_gantry.times"
  grep -q "Step 1/" "$work/gantry.log" && { echo "bench: a rerun of gantry built something" >&2; exit 1; }
  measure cli >>"$work/rerun_cli.times"
done

new_commit
peak_kb=""
if [ -x /usr/bin/time ]; then
  /usr/bin/time -v -o "$work/time.txt" bash -c "$(declare -f run_gantry); work='$work' gantry='$gantry' images='$images' registry='$registry' run_gantry" >/dev/null 2>&1
  peak_kb=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$work/time.txt")
fi

fg=$(median "$work/fresh_gantry.times"); fc=$(median "$work/fresh_cli.times")
rg=$(median "$work/rerun_gantry.times"); rc=$(median "$work/rerun_cli.times")
echo "build phase vs docker CLI ($($docker version -f '{{.Server.Version}}' 2>/dev/null), gantry: ${GANTRY_BUILDER:-auto} builder, docker CLI: classic builder), median of $runs runs, 2 images x ${megabytes} MiB, contexts of ${context_megabytes} MiB each, $(nproc) cores"
printf '  %-34s %12s %12s %10s %s\n' "scenario" "gantry ms" "CLI ms" "ratio" "goal"
awk -v g="$fg" -v c="$fc" 'BEGIN { printf "  %-34s %12.1f %12.1f %9.3fx %s\n", "fresh commit: build + push", g, c, g / c, "gantry/CLI <= 1.0" }'
awk -v g="$rg" -v c="$rc" 'BEGIN { printf "  %-34s %12.1f %12.1f %9.1fx %s\n", "rerun of the commit (CLI cached)", g, c, c / g, "CLI/gantry >= 5 (speed-up)" }'
if [ -n "$peak_kb" ]; then
  awk -v k="$peak_kb" -v c="$context_megabytes" 'BEGIN { printf "  gantry peak RSS during a fresh two-image build + push: %.1f MiB (the two contexts: %d MiB)\n", k / 1024, 2 * c }'
else
  echo "  gantry peak RSS: /usr/bin/time not installed (apt-get install time)"
fi
