#!/usr/bin/env bash
# A Helm chart on the test bed's real cluster, gantry's `charts` input side by side with Helm 4
# on the same chart, in one run (each side in its own namespace, as the least-privilege deployer):
#   install   render + deploy of the chart until healthy: gantry deploy --charts against
#             helm upgrade --install --wait (both run the chart's pre-install hook Job first)
#   upgrade   a changed value, until healthy (the pre-upgrade hook Job runs again on both)
#   failing   an upgrade whose pods crash, from its start to the previous release healthy again:
#             gantry (fails fast, rolls back) against helm --wait --rollback-on-failure
# CHART=DIR benchmarks another chart (it must take `image`, `setting` and `command` values).
# Usage: bash bench/chart.sh [RUNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-3}
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_setup helm cluster
push_web_image

work=$(mktemp -d)
cleanup() {
  delete_namespaces
  rm -rf "$work"
}
trap cleanup EXIT
record() { echo "$2" >>"$work/fig.$1"; }
fig() { median <"$work/fig.$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

chart=${CHART:-$work/chart/web}
if [ -z "${CHART:-}" ]; then
  mkdir -p "$chart/templates"
  printf 'apiVersion: v2\nname: web\nversion: 0.1.0\n' >"$chart/Chart.yaml"
  printf 'image: ""\nsetting: v1\ncommand: ""\n' >"$chart/values.yaml"
  # The web release of bench/lib.sh, its image, setting and command made chart values.
  image=$pinned
  pinned='{{ .Values.image }}'
  manifests "$chart/templates" '{{ .Values.setting }}' '{{ .Values.command }}'
  pinned=$image
  cat >"$chart/templates/migrate.yaml" <<'YAML'
apiVersion: batch/v1
kind: Job
metadata:
  name: web-migrate
  annotations: {helm.sh/hook: "pre-install,pre-upgrade", helm.sh/hook-delete-policy: before-hook-creation}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: {{ .Values.image | quote }}, command: [sh, -c, "echo migrated"]}]
YAML
fi
values() { # FILE SETTING COMMAND
  printf 'image: "%s"\nsetting: "%s"\ncommand: "%s"\n' "$pinned" "$2" "${3//\"/\\\"}" >"$1"
}
values "$work/v1.yaml" v1 "$serve"
values "$work/v2.yaml" v2 "$serve"
values "$work/v3.yaml" v3 "$crash"
cp "$GANTRY_TEST_KUBECONFIG" "$work/kubeconfig"
chmod 600 "$work/kubeconfig"

gantry_chart() { # NAMESPACE VALUES LOG [FLAGS...]: deploys the chart with gantry
  local ns=$1 values=$2 log=$3
  shift 3
  env -C "$work" GANTRY_HELM="$helm" "$gantry" deploy --environment bench --phases deploy \
    --charts="- {name: web, chart: '$chart', values: ['$values']}" \
    --namespace "$ns" --kubeconfig kubeconfig --rollout-timeout 5m "$@" >"$log" 2>&1
}
helm_chart() { # NAMESPACE VALUES LOG [FLAGS...]
  local ns=$1 values=$2 log=$3
  shift 3
  "$helm" --kubeconfig "$work/kubeconfig" -n "$ns" upgrade --install web "$chart" -f "$values" --wait "$@" >"$log" 2>&1
}
fail() { echo "bench: $1; its log:" >&2; tail -30 "$2" >&2; exit 1; }

for run in $(seq "$runs"); do
  ns=$(new_namespace chart-gantry)
  t0=$(now); gantry_chart "$ns" "$work/v1.yaml" "$work/g1.log" || fail "gantry's install failed" "$work/g1.log"
  record gantry.install "$(since "$t0")"
  t0=$(now); gantry_chart "$ns" "$work/v2.yaml" "$work/g2.log" || fail "gantry's upgrade failed" "$work/g2.log"
  record gantry.upgrade "$(since "$t0")"
  t0=$(now)
  if gantry_chart "$ns" "$work/v3.yaml" "$work/g3.log" --restart-threshold 1; then fail "gantry accepted the broken upgrade" "$work/g3.log"; fi
  grep -q "status=rolled-back" "$work/g3.log" || fail "gantry did not roll back" "$work/g3.log"
  "${deployer[@]}" -n "$ns" rollout status deploy/web --timeout 120s >/dev/null
  record gantry.fail "$(since "$t0")"
  [ "$("${deployer[@]}" -n "$ns" get configmap web-config -o jsonpath='{.data.setting}')" = v2 ] ||
    { echo "bench: gantry did not restore the ConfigMap" >&2; exit 1; }

  ns=$(new_namespace chart-helm)
  t0=$(now); helm_chart "$ns" "$work/v1.yaml" "$work/h1.log" --timeout 5m || fail "helm's install failed" "$work/h1.log"
  record helm.install "$(since "$t0")"
  t0=$(now); helm_chart "$ns" "$work/v2.yaml" "$work/h2.log" --timeout 5m || fail "helm's upgrade failed" "$work/h2.log"
  record helm.upgrade "$(since "$t0")"
  t0=$(now)
  if helm_chart "$ns" "$work/v3.yaml" "$work/h3.log" --rollback-on-failure --timeout 60s; then fail "helm accepted the broken upgrade" "$work/h3.log"; fi
  "${deployer[@]}" -n "$ns" rollout status deploy/web --timeout 120s >/dev/null
  record helm.fail "$(since "$t0")"
  [ "$("${deployer[@]}" -n "$ns" get configmap web-config -o jsonpath='{.data.setting}')" = v2 ] ||
    { echo "bench: helm did not restore the ConfigMap" >&2; exit 1; }
  echo "run $run: install gantry $(tail -n1 "$work/fig.gantry.install")s helm $(tail -n1 "$work/fig.helm.install")s" >&2
done

echo
echo "$("$gantry" --version | head -n1), helm $("$helm" version --short); chart $chart; medians of $runs runs"
echo "failing upgrade: progressDeadlineSeconds 60; gantry --restart-threshold 1, helm --timeout 60s"
printf '%-40s %9s %9s %8s\n' "" "gantry s" "helm s" "ratio"
for step in install upgrade fail; do
  case $step in
    install) label="render + install until healthy" ;;
    upgrade) label="render + upgrade until healthy" ;;
    fail) label="failing upgrade to restored health" ;;
  esac
  g=$(fig "gantry.$step") h=$(fig "helm.$step")
  printf '%-40s %9s %9s %8s\n' "$label" "$g" "$h" "$(ratio "$g" "$h")"
done
