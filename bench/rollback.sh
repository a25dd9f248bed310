#!/usr/bin/env bash
# A crash-looping release on the test bed's real cluster, gantry side by side with the plain
# kubectl workflow on the same manifests, in one run:
#   recovery   from the start of the deploy of a broken v2 (its backend exits at start) over a
#              healthy v1 to the restored v1 being healthy again:
#              gantry deploy (fails fast, rolls every resource back, waits for v1 healthy)
#              against kubectl apply --server-side + kubectl rollout status (fails at the
#              manifests' progressDeadlineSeconds) + kubectl rollout undo + kubectl rollout status
#              (undo restores the Deployment only; the ConfigMap stays v2's).
#   detection  gantry's reaction time: from the moment the API first serves a pod status showing
#              the failure (a crashed container: restartCount > 0 or CrashLoopBackOff; or
#              ErrImagePull), seen by an independent `kubectl get pods --watch`, to gantry logging
#              that it rolls back (tolerances 0).
# Both sides deploy as the test bed's least-privilege deployer, each in its own namespace.
# The settings each side runs with are printed; medians and ratios at the end.
# Usage: bash bench/rollback.sh [RUNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-3}
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_setup cluster
push_web_image

work=$(mktemp -d)
cleanup() {
  delete_namespaces
  rm -rf "$work"
}
trap cleanup EXIT
stamp() { python3 -u -c 'import sys, time
for line in sys.stdin:
    print(f"{time.time():.3f} {line}", end="", flush=True)'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

manifests "$work/v1" v1 "$serve"
manifests "$work/v2" v2 "$crash"
cp "$GANTRY_TEST_KUBECONFIG" "$work/kubeconfig"

# gantry_deploy NAMESPACE DIR [FLAGS...]: one local deploy; its log goes to stdout
gantry_deploy() {
  local ns=$1 dir=$2
  shift 2
  (cd "$work" && "$gantry" deploy --environment bench --phases deploy --manifests "$dir" \
     --namespace "$ns" --kubeconfig kubeconfig --rollout-timeout 5m "$@")
}

gantry_times=() kubectl_times=() crash_detect=() pull_detect=()
for run in $(seq "$runs"); do
  # gantry: v1, then the broken v2 timed until gantry exits (the restored v1 is healthy then).
  ns=$(new_namespace gantry)
  gantry_deploy "$ns" v1 >"$work/g1.log" 2>&1 || { cat "$work/g1.log"; exit 1; }
  t0=$(now)
  if gantry_deploy "$ns" v2 --restart-threshold 1 >"$work/g2.log" 2>&1; then
    echo "bench: gantry did not fail the broken release" >&2; cat "$work/g2.log"; exit 1
  fi
  t1=$(now)
  grep -q "status=rolled-back" "$work/g2.log" || { echo "bench: gantry did not roll back" >&2; cat "$work/g2.log"; exit 1; }
  "${admin[@]}" -n "$ns" rollout status deploy/web --timeout 10s >/dev/null
  gantry_times+=("$(elapsed "$t0" "$t1")")

  # kubectl: the same two releases with the usual script.
  ns=$(new_namespace kubectl)
  "${deployer[@]}" -n "$ns" apply --server-side -f "$work/v1/app.yaml" >/dev/null
  "${deployer[@]}" -n "$ns" rollout status deploy/web --timeout 120s >/dev/null
  t0=$(now)
  "${deployer[@]}" -n "$ns" apply --server-side -f "$work/v2/app.yaml" >/dev/null
  if "${deployer[@]}" -n "$ns" rollout status deploy/web --timeout 300s >/dev/null 2>&1; then
    echo "bench: kubectl rollout status accepted the broken release" >&2; exit 1
  fi
  "${deployer[@]}" -n "$ns" rollout undo deploy/web >/dev/null
  "${deployer[@]}" -n "$ns" rollout status deploy/web --timeout 120s >/dev/null
  t1=$(now)
  kubectl_times+=("$(elapsed "$t0" "$t1")")

  # Detection: tolerances 0, an independent watch timestamps what the API serves.
  for kind in crash pull; do
    ns=$(new_namespace "detect-$kind")
    gantry_deploy "$ns" v1 >/dev/null 2>&1
    # The first status that shows the failure: a crashed container (restartCount > 0, or
    # CrashLoopBackOff), or an image pull error.
    if [[ $kind == crash ]]; then broken=v2; reason='restarts=[1-9]|CrashLoopBackOff'
    else
      broken=v3; reason='ErrImagePull|ImagePullBackOff'
      manifests "$work/v3" v3 "$serve"
      sed -i "s|image: \"$pinned\"|image: \"127.0.0.1:9/gantry-bench/web:v3\"|" "$work/v3/app.yaml"
    fi
    # The watch and its timestamper in a process group of their own, stopped as one.
    setsid python3 -u -c 'import subprocess, sys, time
watch = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
for line in watch.stdout:
    print(f"{time.time():.3f} {line}", end="", flush=True)' \
      "${admin[@]}" -n "$ns" get pods --watch --output-watch-events \
      -o jsonpath='{.object.metadata.name} restarts={.object.status.containerStatuses[*].restartCount} {.object.status.containerStatuses[*].state.waiting.reason}{"\n"}' \
      >"$work/watch.log" &
    watcher=$!
    gantry_deploy "$ns" "$broken" --restart-threshold 0 --pull-error-tolerance 0s 2>&1 | stamp >"$work/detect.log" || true
    kill -TERM -- "-$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    first=$(awk -v r="$reason" '$0 ~ r { print $1; exit }' "$work/watch.log")
    rollback=$(awk '/rolling back to release/ { print $1; exit }' "$work/detect.log")
    if [[ -z $first || -z $rollback ]]; then
      echo "bench: no $reason seen ($first) or no rollback logged ($rollback)" >&2
      tail -n 5 "$work/watch.log" "$work/detect.log" >&2
      exit 1
    fi
    latency=$(awk -v a="$first" -v b="$rollback" 'BEGIN { printf "%.3f", b - a }')
    if [[ $kind == crash ]]; then crash_detect+=("$latency"); else pull_detect+=("$latency"); fi
  done
  echo "run $run: gantry ${gantry_times[-1]}s, kubectl ${kubectl_times[-1]}s, detection crash ${crash_detect[-1]}s pull ${pull_detect[-1]}s" >&2
done

g=$(printf '%s\n' "${gantry_times[@]}" | median)
k=$(printf '%s\n' "${kubectl_times[@]}" | median)
c=$(printf '%s\n' "${crash_detect[@]}" | median)
p=$(printf '%s\n' "${pull_detect[@]}" | median)
echo
echo "Kubernetes $("${admin[@]}" version -o json | sed -n 's/.*"gitVersion": *"\(v1[^"]*\)".*/\1/p' | tail -n1), $runs run(s), medians"
echo "settings: manifests progressDeadlineSeconds 60; gantry --restart-threshold 1 (fails after the second restart), defaults otherwise"
printf '%-62s %8s\n' "crash-looping v2 over v1, start to v1 healthy again" "seconds"
printf '  %-60s %8s\n' "gantry deploy (fail fast, every resource rolled back)" "$g"
printf '  %-60s %8s\n' "kubectl apply + rollout status + rollout undo + status" "$k"
printf '  %-60s %8s\n' "ratio gantry / kubectl" "$(awk -v a="$g" -v b="$k" 'BEGIN { printf "%.2f", a / b }')"
printf '%-62s %8s\n' "detection: first status the API serves -> rollback starts" ""
printf '  %-60s %8s\n' "crashed container (restart-threshold 0)" "$c"
printf '  %-60s %8s\n' "ErrImagePull (pull-error-tolerance 0s)" "$p"
