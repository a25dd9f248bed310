# Shared by the benchmarks: the test bed, gantry's release build, and the web release deployed on
# the test bed's cluster.

# bench_setup [helm] [cluster]: reads the test bed's environment, builds gantry (release) and sets
# `gantry`; with `helm`, checks the test bed's Helm and sets `helm`; with `cluster`, checks that
# the cluster answers and sets `kubectl`, `admin` and `deployer` (kubectl as admin / as deployer).
bench_setup() {
  local env_file=${GANTRY_TESTBED_DIR:-/var/tmp/gantry-testbed}/env want
  [ -f "$env_file" ] || { echo "bench: no test bed; run bash .ci/testbed up" >&2; exit 1; }
  # shellcheck disable=SC1090
  source "$env_file"
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gantry-target}
  cargo build --release --quiet --bin gantry
  gantry=$CARGO_TARGET_DIR/release/gantry
  for want in "$@"; do
    case $want in
      helm)
        [ -x "${GANTRY_TEST_HELM:-}" ] || { echo "bench: no Helm in the test bed; run bash .ci/testbed up" >&2; exit 1; }
        helm=$GANTRY_TEST_HELM ;;
      cluster)
        kubectl=$GANTRY_TEST_KUBECTL
        admin=("$kubectl" --kubeconfig "$GANTRY_TEST_ADMIN_KUBECONFIG")
        deployer=("$kubectl" --kubeconfig "$GANTRY_TEST_KUBECONFIG")
        "${admin[@]}" get --raw /readyz >/dev/null || { echo "bench: the test bed's cluster does not answer; run bash .ci/testbed up" >&2; exit 1; } ;;
    esac
  done
}

# push_web_image: pushes the test bed's busybox to its registry as gantry-bench/web:v1 and sets
# `pinned` to its reference by digest (nothing can be pulled from elsewhere).
push_web_image() {
  local docker=${GANTRY_TEST_DOCKER:-/usr/bin/docker} registry=${GANTRY_TEST_REGISTRY:-127.0.0.1:5000} digest
  "$docker" tag "$GANTRY_TEST_BASE_IMAGE" "$registry/gantry-bench/web:v1"
  "$docker" push -q "$registry/gantry-bench/web:v1" >/dev/null
  digest=$(curl -fsSI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$registry/v2/gantry-bench/web/manifests/v1" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
  pinned=$registry/gantry-bench/web@$digest
}

# manifests DIR SETTING COMMAND: DIR/app.yaml, a ConfigMap, a Service and a Deployment of 2
# replicas of `$pinned` running COMMAND (progressDeadlineSeconds 60, a readiness probe).
manifests() {
  mkdir -p "$1"
  cat >"$1/app.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {setting: "$2"}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  progressDeadlineSeconds: 60
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: "$pinned"
        command: [sh, -c, "$3"]
        envFrom: [{configMapRef: {name: web-config}}]
        readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
YAML
}

# The commands of a healthy and of a crashing web container.
serve="trap 'exit 0' TERM; mkdir -p /tmp/www; echo ok > /tmp/www/index.html; httpd -f -p 8080 -h /tmp/www & wait"
crash="echo fatal: DATABASE_URL is not set >&2; exit 1"

# new_namespace PREFIX: a fresh namespace, created as the administrator (`admin`), and written
# to $work/namespaces for delete_namespaces (a file, not a variable: callers run it in $(...)).
new_namespace() {
  local ns
  ns=bench-$1-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
  "${admin[@]}" create namespace "$ns" >/dev/null
  echo "$ns" >>"$work/namespaces"
  echo "$ns"
}
delete_namespaces() {
  [ -f "$work/namespaces" ] || return 0
  while read -r ns; do "${admin[@]}" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; done <"$work/namespaces"
}

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
