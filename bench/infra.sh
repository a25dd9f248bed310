#!/usr/bin/env bash
# The infra phase side by side with the plain Terraform commands on the same fixture, in one run:
#   gantry       gantry deploy --phases infra (version check, init, workspace, validate, plan,
#                show -json, guard, apply of the saved plan, output -json)
#   saved-plan   terraform init && plan -out && apply <plan> && output -json
#   plan-twice   terraform init && plan && apply -auto-approve (plans a second time) && output -json
# Every run starts from a fresh copy (empty state, so every resource is created); the variants
# are interleaved so machine noise hits them alike; the median of each is compared.
# Usage: bash bench/infra.sh [RUNS] [RESOURCES] [LATENCY_SECONDS...]
#   LATENCY_SECONDS: each resource's local-exec sleep, standing in for a cloud API call; one
#   scenario per value (default: 0 and 1). Terraform's default parallelism (10) applies.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-7}
resources=${2:-20}
shift $(($# < 2 ? $# : 2))
latencies=("${@:-0}")
[ $# -gt 0 ] || latencies=(0 1)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gantry-target}
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
cargo build --release --quiet --bin gantry
gantry=$CARGO_TARGET_DIR/release/gantry
fixture=$PWD/tests/fixtures/terraform/bench/main.tf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fresh() {
  rm -rf "$work/repo"
  mkdir -p "$work/repo/infra"
  cp "$fixture" "$work/repo/infra/main.tf"
}

run_gantry() {
  cd "$work/repo" && "$gantry" deploy --environment bench --phases infra \
    --terraform-directory infra --terraform-vars "resources=$resources
latency=$latency"
}

run_saved_plan() {
  cd "$work/repo/infra" && terraform init -input=false -no-color &&
    terraform plan -input=false -no-color -out=plan.tfplan -var "resources=$resources" \
      -var "latency=$latency" &&
    terraform apply -input=false -no-color plan.tfplan && terraform output -json
}

run_plan_twice() {
  cd "$work/repo/infra" && terraform init -input=false -no-color &&
    terraform plan -input=false -no-color -var "resources=$resources" -var "latency=$latency" &&
    terraform apply -input=false -no-color -auto-approve -var "resources=$resources" \
      -var "latency=$latency" && terraform output -json
}

# Wall time of one fresh run of a variant, in milliseconds; a failed run aborts the bench.
measure() {
  fresh
  local start=$EPOCHREALTIME
  if ! ("run_$1" >"$work/$1.log" 2>&1); then
    echo "bench: the $1 variant failed:" >&2
    tail -20 "$work/$1.log" >&2
    exit 1
  fi
  awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", (e - s) * 1000 }'
}

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

variants=(gantry saved_plan plan_twice)
version=$(terraform version 2>/dev/null | head -1)
echo "infra phase vs plain terraform: median of $runs fresh runs each, $resources resources ($version, $(nproc) cores)"
printf '  %-14s %14s %14s %14s %18s %18s\n' "latency/res." "gantry ms" "saved-plan ms" "plan-twice ms" "gantry/saved-plan" "gantry/plan-twice"
for latency in "${latencies[@]}"; do
  rm -f "$work"/*.times
  for variant in "${variants[@]}"; do measure "$variant" >/dev/null; done # warm caches
  for ((i = 0; i < runs; i++)); do
    for variant in "${variants[@]}"; do measure "$variant" >>"$work/$variant.times"; done
  done
  g=$(median "$work/gantry.times")
  s=$(median "$work/saved_plan.times")
  p=$(median "$work/plan_twice.times")
  awk -v l="$latency" -v g="$g" -v s="$s" -v p="$p" 'BEGIN {
    printf "  %-14s %14.1f %14.1f %14.1f %17.3fx %17.3fx\n", l "s", g, s, p, g / s, g / p
  }'
done
echo "  (goal: gantry/saved-plan <= 1.05; gantry runs 4 more terraform processes: version, workspace select, validate, show)"
