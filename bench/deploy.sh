#!/usr/bin/env bash
# Deploy speed on the test bed's real cluster, gantry side by side with the plain tools, in one run:
#   apply     300 ConfigMaps (GANTRY_BENCH_OBJECTS), each side in a fresh namespace as the test
#             bed's least-privilege deployer, at 0 ms and at 30 ms round trip (GANTRY_BENCH_RTT_MS;
#             a plain TCP delay proxy, bench/latency-proxy.py, so TLS and HTTP/2 pass untouched):
#               first   gantry deploy (pre-flight dry run + access reviews + records + apply)
#                       against kubectl apply --server-side of the same file (fresh discovery
#                       cache, as on a fresh runner)
#               rerun   the same again (nothing changed)
#             with the requests each sent (gantry's own count; kubectl's -v=6 responses), the
#             serial round trips the proxy saw (a client send after more than half a round
#             trip of silence starts one), and the peak RSS.
#   memory    gantry's peak RSS for a first deploy of 2,000 ConfigMaps (0 ms).
#   failure   a release whose pods crash at start over a healthy one (ConfigMap, Service,
#             Deployment of 2 replicas): from the start of the upgrade to the restored release
#             being healthy, gantry deploy (fails fast, rolls back) against Helm 4's
#             helm upgrade --install --wait --rollback-on-failure on a chart holding the same
#             manifests (--timeout 60s, the manifests' progressDeadlineSeconds; gantry with
#             --restart-threshold 1, as bench/rollback.sh).
# Medians of RUNS runs and ratios (gantry / other) at the end; absolute times are noisy here.
# Usage: bash bench/deploy.sh [RUNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-3}
objects=${GANTRY_BENCH_OBJECTS:-300}
rtt=${GANTRY_BENCH_RTT_MS:-30}
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_setup helm cluster
work=$(mktemp -d)
proxy_pid=
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  delete_namespaces
  rm -rf "$work"
}
trap cleanup EXIT
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# measure LOG COMMAND...: runs COMMAND (output to LOG); prints "seconds peak_rss_kb start end".
measure() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
log, command = sys.argv[1], sys.argv[2:]
start = time.time()
with open(log, "w") as out:
    code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
end = time.time()
if code != 0:
    sys.stderr.write(f"bench: {' '.join(command[:2])} failed (exit {code}); its log:\n{open(log).read()[-3000:]}\n")
    sys.exit(1)
print(f"{end - start:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {start:.6f} {end:.6f}")
PY
}

# The latency proxy in front of the API server, and a deployer kubeconfig for each path.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
upstream=${GANTRY_TEST_API_SERVER#https://}
python3 bench/latency-proxy.py "$port" "$upstream" "$rtt" "$work/proxy.log" >"$work/proxy.out" 2>&1 &
proxy_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
cp "$GANTRY_TEST_KUBECONFIG" "$work/kubeconfig-0"
sed "s#$GANTRY_TEST_API_SERVER#https://127.0.0.1:$port#" "$GANTRY_TEST_KUBECONFIG" >"$work/kubeconfig-$rtt"
chmod 600 "$work"/kubeconfig-*
waves() { # START END: serial round trips the proxy saw in that window
  python3 bench/latency-proxy.py --waves "$work/proxy.log" "$rtt" "$1" "$2" | cut -d' ' -f1
}

configmaps() { # COUNT DIR
  mkdir -p "$2"
  python3 - "$1" >"$2/configmaps.yaml" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bench-{i}\ndata:\n  key: value-{i}\n  setting: \"{i * 7}\"")
PY
}
configmaps "$objects" "$work/many"
configmaps 2000 "$work/memory"

# record NAME VALUE: appends one figure of this run
record() { echo "$2" >>"$work/fig.$1"; }
fig() { median <"$work/fig.$1"; }

gantry_apply() { # KUBECONFIG NAMESPACE DIR LOG
  measure "$4" env -C "$work" "$gantry" deploy --environment bench --phases deploy --manifests "$3" \
    --namespace "$2" --kubeconfig "$1" --rollout-timeout 5m
}
kubectl_apply() { # KUBECONFIG NAMESPACE DIR LOG
  measure "$4" "$kubectl" --kubeconfig "$1" --cache-dir "$(mktemp -d -p "$work")" -n "$2" \
    apply --server-side -f "$3" -v=6
}
for run in $(seq "$runs"); do
  for delay in 0 "$rtt"; do
    cfg=$work/kubeconfig-$delay
    for tool in kubectl gantry; do
      ns=$(new_namespace "$tool")
      for pass in first rerun; do
        log=$work/$tool-$delay-$pass.log
        read -r secs rss start end < <("${tool}_apply" "$cfg" "$ns" "$work/many" "$log") || true
        [ -n "${end:-}" ] || exit 1
        if [ "$tool" = gantry ]; then
          requests=$(sed -n 's/.*API requests: \([0-9]*\).*/\1/p' "$log" | tail -n1)
        else
          requests=$(grep -c '"Response"' "$log" || true)
        fi
        key=$tool.$delay.$pass
        record "$key.s" "$secs"
        record "$key.req" "$requests"
        record "$key.rss" "$((rss / 1024))"
        [ "$delay" = 0 ] || record "$key.rt" "$(waves "$start" "$end")"
      done
      grep -q "unchanged, verified" "$work/gantry-$delay-rerun.log" 2>/dev/null || [ "$tool" = kubectl ] ||
        { echo "bench: gantry's rerun was not verified unchanged" >&2; tail -20 "$work/gantry-$delay-rerun.log" >&2; exit 1; }
    done
  done
  echo "run $run: at ${rtt} ms gantry $(tail -n1 "$work/fig.gantry.$rtt.first.s")s, kubectl $(tail -n1 "$work/fig.kubectl.$rtt.first.s")s" >&2
done

# Memory: 2,000 objects, once.
ns=$(new_namespace memory)
read -r _ memory_rss _ end < <(gantry_apply "$work/kubeconfig-0" "$ns" "$work/memory" "$work/memory.log") || true
[ -n "${end:-}" ] || exit 1

# A failing release: gantry against Helm 4 with --rollback-on-failure.
push_web_image
app() { # DIR SETTING COMMAND: the release as plain manifests (DIR) and as a chart (DIR-chart)
  manifests "$@"
  mkdir -p "$1-chart/templates"
  printf 'apiVersion: v2\nname: web\nversion: 0.1.0\n' >"$1-chart/Chart.yaml"
  cp "$1/app.yaml" "$1-chart/templates/app.yaml"
}
app "$work/v1" v1 "$serve"
app "$work/v2" v2 "$crash"
deployer=("$kubectl" --kubeconfig "$work/kubeconfig-0")
for run in $(seq "$runs"); do
  ns=$(new_namespace gantry-fail)
  gantry_apply "$work/kubeconfig-0" "$ns" v1 "$work/g1.log" >/dev/null || exit 1
  t0=$(date +%s.%N)
  if env -C "$work" "$gantry" deploy --environment bench --phases deploy --manifests v2 --namespace "$ns" \
       --kubeconfig kubeconfig-0 --rollout-timeout 5m --restart-threshold 1 >"$work/g2.log" 2>&1; then
    echo "bench: gantry did not fail the broken release" >&2; exit 1
  fi
  grep -q "status=rolled-back" "$work/g2.log" || { echo "bench: gantry did not roll back" >&2; tail -20 "$work/g2.log" >&2; exit 1; }
  "${deployer[@]}" -n "$ns" rollout status deploy/web --timeout 60s >/dev/null
  record gantry.fail "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')"

  ns=$(new_namespace helm-fail)
  helm_run=("$helm" --kubeconfig "$work/kubeconfig-0" -n "$ns")
  "${helm_run[@]}" upgrade --install web "$work/v1-chart" --wait --timeout 120s >/dev/null
  t0=$(date +%s.%N)
  if "${helm_run[@]}" upgrade --install web "$work/v2-chart" --wait --rollback-on-failure --timeout 60s >"$work/h2.log" 2>&1; then
    echo "bench: helm accepted the broken release" >&2; exit 1
  fi
  "${deployer[@]}" -n "$ns" rollout status deploy/web --timeout 120s >/dev/null
  [ "$("${deployer[@]}" -n "$ns" get configmap web-config -o jsonpath='{.data.setting}')" = v1 ] ||
    { echo "bench: helm did not restore the ConfigMap" >&2; exit 1; }
  record helm.fail "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')"
done

echo
echo "$("$gantry" --version | head -n1), $("$kubectl" version --client 2>/dev/null | head -n1), helm $("$helm" version --short)"
echo "settings: $objects ConfigMaps; delay proxy ${rtt} ms round trip (half each way); medians of $runs runs"
echo "failing release: progressDeadlineSeconds 60; gantry --restart-threshold 1 (fails after the second restart), helm --timeout 60s"
printf '%-34s %9s %9s %8s %9s %9s %8s %10s\n' "" "gantry s" "kubectl s" "ratio" "g. reqs" "k. reqs" "g. RTs" "k. RTs"
for delay in 0 "$rtt"; do
  for pass in first rerun; do
    g=$(fig "gantry.$delay.$pass.s") k=$(fig "kubectl.$delay.$pass.s")
    grt=- krt=-
    [ "$delay" = 0 ] || { grt=$(fig "gantry.$delay.$pass.rt"); krt=$(fig "kubectl.$delay.$pass.rt"); }
    printf '%-34s %9s %9s %8s %9s %9s %8s %10s\n' "$pass apply, $delay ms" "$g" "$k" "$(ratio "$g" "$k")" \
      "$(fig "gantry.$delay.$pass.req")" "$(fig "kubectl.$delay.$pass.req")" "$grt" "$krt"
  done
done
echo "speed-up at $rtt ms, first apply: $(ratio "$(fig "kubectl.$rtt.first.s")" "$(fig "gantry.$rtt.first.s")")x; rerun: $(ratio "$(fig "kubectl.$rtt.rerun.s")" "$(fig "gantry.$rtt.rerun.s")")x"
echo "peak RSS ($objects objects, first apply at 0 ms): gantry $(fig gantry.0.first.rss) MB, kubectl $(fig kubectl.0.first.rss) MB; gantry with 2,000 objects: $((memory_rss / 1024)) MB"
g=$(fig gantry.fail) h=$(fig helm.fail)
echo "failing release to restored health: gantry ${g}s, helm --rollback-on-failure ${h}s, ratio $(ratio "$g" "$h")"
