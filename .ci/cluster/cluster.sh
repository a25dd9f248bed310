# shellcheck shell=bash
# The test bed's Kubernetes: a real single-node cluster on this machine, sourced by .ci/testbed
# (which provides fail/ok/info/start_bg/stop_pid/pid_of/wait_ready/write_if_changed/port_open).
#
# Built from the Go module proxy (modules in .ci/go/, binaries cached under $STATE/bin keyed by
# the module files, the Go version and the build flags, so a second `up` builds nothing):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl,
# containerd 2.x with its runc shim and ctr, CoreDNS; runc and the CNI plugins are Debian's.
# Nothing is pulled: the sandbox ("pause") image is a static C program (.ci/cluster/pause) and
# CoreDNS's image holds the binary built here, both imported into containerd.
#
# Layout on the host (all of it reachable from this machine only):
#   node address   $NODE_IP on `lo` (pods reach the API server there; nothing listens on eth0)
#   API server     https://$NODE_IP:6443 (kubeconfigs in $CL: admin, gantry deployer)
#   etcd           127.0.0.1:2379 (no TLS, no fsync: a throwaway store)
#   containerd     $CTR_SOCK, root /var/lib/gantry-containerd (Docker's own containerd untouched)
#   pods           bridge gantry-cni0, 10.244.0.0/24; Services 10.96.0.0/16, DNS 10.96.0.10
#   storage        StorageClass `standard` (default), the controller manager's host-path
#                  provisioner: PersistentVolumeClaims bind to directories under /tmp/hostpath_pv
# The kubelet sets a few kernel settings when it starts (vm.overcommit_memory, kernel.panic,
# kernel.panic_on_oops) and kube-proxy, the CNI plugins and Docker add iptables chains; both are
# fine on a test machine, not on a workstation you care about.

CL=$STATE/cluster
CL_BIN=$STATE/bin
CL_LOGS=$CL/logs
CL_PKI=$CL/pki
GO_MODULES=$HERE/go
CLUSTER_SRC=$HERE/cluster
K8S_VERSION=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$GO_MODULES/kubernetes/go.mod")
NODE_NAME=gantry-testbed
NODE_IP=${GANTRY_TESTBED_NODE_IP:-10.201.0.1}
API_PORT=6443
API_URL=https://$NODE_IP:$API_PORT
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
CLUSTER_CIDR=10.244.0.0/16
POD_CIDR=10.244.0.0/24
CTR_ROOT=/var/lib/gantry-containerd
CTR_STATE=/run/gantry-containerd
CTR_SOCK=$CTR_STATE/containerd.sock
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
COREDNS_VERSION=$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3}' "$GO_MODULES/coredns/go.mod")
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$COREDNS_VERSION
KUBECTL=$CL_BIN/kubernetes/kubectl
ADMIN_KUBECONFIG=$CL/admin.kubeconfig
DEPLOYER_KUBECONFIG=$CL/gantry.kubeconfig
DEPLOYER_NAMESPACE=gantry-system
CLUSTER_APT_PACKAGES=(runc containernetworking-plugins iptables conntrack iproute2 gcc libc6-dev)

kc() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }
ctr_() { "$CL_BIN/containerd/ctr" --address "$CTR_SOCK" "$@"; }

# ----------------------------------------------------------------- build (Go module proxy)
# go_component NAME LDFLAGS PACKAGE...: builds the packages of module .ci/go/NAME into
# $CL_BIN/NAME/ unless the same inputs were built before.
go_component() {
  local name=$1 ldflags=$2 dir=$GO_MODULES/$1 out=$CL_BIN/$1 key log=$CL_LOGS/build-$1.log t0=$EPOCHREALTIME
  shift 2
  mkdir -p "$CL_BIN" "$CL_LOGS"
  key=$( { go version; echo "$ldflags $*"; cat "$dir"/go.mod "$dir"/go.sum "$dir"/*.go; } | sha256sum | cut -c1-16)
  if [[ -f $out/.key && $(<"$out/.key") == "$key" ]]; then ok "built $name (cached)"; return; fi
  command -v go >/dev/null || fail "build $name" "no go on PATH (Go >= 1.25 is needed to build the cluster components)"
  info "building $name from the Go module proxy (log: $log)"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" "$@") >"$log" 2>&1 ||
    fail "build $name" "go build failed" "$log"
  echo "$key" >"$out.tmp/.key"
  rm -rf "$out"; mv "$out.tmp" "$out"
  ok "built $name in $(since "$t0")s"
}
version_ldflags() { # PACKAGE... : Kubernetes' version stamping, so /version says the release
  local minor=${K8S_VERSION#v1.} p out="-s -w"
  minor=${minor%%.*}
  for p in "$@"; do
    out+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    out+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$out"
}
cluster_build() {
  mkdir -p "$CL_BIN" "$CL_LOGS"
  go_component kubernetes "$(version_ldflags k8s.io/component-base/version k8s.io/client-go/pkg/version)" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
  go_component etcd "-s -w" .
  local cv
  cv=$(awk '$1 == "require" && $2 == "github.com/containerd/containerd/v2" {print $3}' "$GO_MODULES/containerd/go.mod")
  go_component containerd "-s -w -X github.com/containerd/containerd/v2/version.Version=$cv" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr
  go_component coredns "-s -w" .
  local pause=$CL_BIN/pause
  if [[ ! -x $pause || $CLUSTER_SRC/pause/pause.c -nt $pause ]]; then
    gcc -static -O2 -o "$pause" "$CLUSTER_SRC/pause/pause.c" >"$CL_LOGS/build-pause.log" 2>&1 ||
      fail "build pause" "gcc -static failed (libc6-dev installed?)" "$CL_LOGS/build-pause.log"
  fi
  ok "built pause"
}

# ----------------------------------------------------------------- certificates
# cert NAME CN O SAN(or -) : a key and certificate signed by the cluster CA
cert() {
  local name=$1 cn=$2 org=$3 san=$4 subj="/CN=$2" ext=$CL_PKI/$1.ext
  [[ $org == - ]] || subj="/O=$org/CN=$cn"
  if [[ -s $CL_PKI/$name.crt && -s $CL_PKI/$name.key ]] &&
     openssl x509 -checkend 86400 -noout -in "$CL_PKI/$name.crt" >/dev/null 2>&1 &&
     openssl verify -CAfile "$CL_PKI/ca.crt" "$CL_PKI/$name.crt" >/dev/null 2>&1; then return; fi
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ $san == - ]]; then echo "extendedKeyUsage=clientAuth"
    else echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"; fi
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$CL_PKI/$name.key" -subj "$subj" \
    -out "$CL_PKI/$name.csr" >>"$CL_LOGS/pki.log" 2>&1 &&
  openssl x509 -req -in "$CL_PKI/$name.csr" -CA "$CL_PKI/ca.crt" -CAkey "$CL_PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$CL_PKI/$name.crt" >>"$CL_LOGS/pki.log" 2>&1 ||
    fail "cluster pki" "could not make the $name certificate" "$CL_LOGS/pki.log"
  chmod 0600 "$CL_PKI/$name.key"
  rm -f "$CL_PKI/$name.csr"
}
cluster_pki() {
  mkdir -p "$CL_PKI"; chmod 0700 "$CL_PKI"
  if [[ ! -s $CL_PKI/ca.crt || ! -s $CL_PKI/ca.key ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=gantry-testbed-kubernetes-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -keyout "$CL_PKI/ca.key" -out "$CL_PKI/ca.crt" >>"$CL_LOGS/pki.log" 2>&1 ||
      fail "cluster pki" "could not make the cluster CA" "$CL_LOGS/pki.log"
    rm -f "$CL_PKI"/*.crt.old
    find "$CL_PKI" -name '*.crt' ! -name ca.crt -delete
  fi
  cert apiserver kube-apiserver - \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$API_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters -
  cert admin kubernetes-admin system:masters -
  cert controller-manager system:kube-controller-manager - -
  cert scheduler system:kube-scheduler - -
  cert kube-proxy system:kube-proxy system:node-proxier -
  cert kubelet-client "system:node:$NODE_NAME" system:nodes -
  cert kubelet "$NODE_NAME" - "IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME,DNS:localhost"
  if [[ ! -s $CL_PKI/sa.key ]]; then
    openssl genrsa -out "$CL_PKI/sa.key" 2048 >>"$CL_LOGS/pki.log" 2>&1 &&
      openssl rsa -in "$CL_PKI/sa.key" -pubout -out "$CL_PKI/sa.pub" >>"$CL_LOGS/pki.log" 2>&1 ||
      fail "cluster pki" "could not make the service account key" "$CL_LOGS/pki.log"
  fi
  ok "cluster certificates ($CL_PKI)"
}
kubeconfig_for() { # NAME -> $CL/NAME.kubeconfig with the client certificate NAME
  cat <<EOF | write_if_changed "$CL/$1.kubeconfig" 0600 || true
apiVersion: v1
kind: Config
clusters:
- name: gantry-testbed
  cluster:
    server: $API_URL
    certificate-authority: $CL_PKI/ca.crt
users:
- name: $1
  user:
    client-certificate: $CL_PKI/$2.crt
    client-key: $CL_PKI/$2.key
contexts:
- name: $1@gantry-testbed
  context: {cluster: gantry-testbed, user: $1}
current-context: $1@gantry-testbed
EOF
}

# ----------------------------------------------------------------- configuration
CHANGED=()
config_file() { # NAME FILE MODE < content: records NAME in CHANGED when FILE changed
  if write_if_changed "$2" "$3"; then CHANGED+=("$1"); fi
}
changed() { local c; for c in "${CHANGED[@]}"; do [[ $c == "$1" ]] && return 0; done; return 1; }
cluster_config() {
  mkdir -p "$CL"/{etcd,cni/net.d,cni/ipam,kubelet,containerd/certs.d/127.0.0.1:5000,containerd/certs.d/127.0.0.1:5443}
  kubeconfig_for admin admin
  kubeconfig_for controller-manager controller-manager
  kubeconfig_for scheduler scheduler
  kubeconfig_for kube-proxy kube-proxy
  kubeconfig_for kubelet kubelet-client
  config_file containerd "$CL/containerd/certs.d/127.0.0.1:5000/hosts.toml" 0644 <<EOF
server = "http://127.0.0.1:5000"
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
EOF
  config_file containerd "$CL/containerd/certs.d/127.0.0.1:5443/hosts.toml" 0644 <<EOF
server = "https://127.0.0.1:5443"
[host."https://127.0.0.1:5443"]
  capabilities = ["pull", "resolve"]
  ca = "$CA_CRT"
EOF
  # restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, so no process may lower its
  # oom_score_adj; without it runc fails every sandbox ("can't get final child's PID from pipe").
  config_file containerd "$CL/containerd/config.toml" 0644 <<EOF
version = 3
root = "$CTR_ROOT"
state = "$CTR_STATE"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[debug]
  address = "$CTR_STATE/debug.sock"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$CL/containerd/certs.d"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$CL/cni/net.d"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins.'io.containerd.transfer.v1.local']
  config_path = "$CL/containerd/certs.d"
EOF
  # Docker sets the FORWARD policy to DROP: the firewall plugin lets pod traffic through.
  config_file containerd "$CL/cni/net.d/10-gantry.conflist" 0644 <<EOF
{
  "cniVersion": "1.0.0",
  "name": "gantry-testbed",
  "plugins": [
    {"type": "bridge", "bridge": "gantry-cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$CL/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF
  config_file apiserver "$CL/audit-policy.yaml" 0644 <<'EOF'
# Writes by people and by gantry, for tests that assert from the API server's side what a run
# wrote and when. The cluster's own components and every read are left out.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  verbs: [get, list, watch]
- level: None
  users: [system:kube-controller-manager, system:kube-scheduler, system:kube-proxy, system:apiserver]
- level: None
  userGroups: [system:nodes, "system:serviceaccounts:kube-system"]
- level: Metadata
EOF
  config_file kubelet "$CL/kubelet/config.yaml" 0644 <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $CL_PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $CL_PKI/kubelet.crt
tlsPrivateKeyFile: $CL_PKI/kubelet.key
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: /etc/resolv.conf
serializeImagePulls: false
maxPods: 250
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
rotateCertificates: false
serverTLSBootstrap: false
shutdownGracePeriod: 0s
EOF
  config_file kube-proxy "$CL/kube-proxy.yaml" 0644 <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $CL/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
oomScoreAdj: 0
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  ok "cluster configuration ($CL)"
}

# ----------------------------------------------------------------- processes
# The address pods reach the API server at, and the kernel settings the pod network needs.
cluster_host() {
  ip -4 addr show dev lo | grep -q " $NODE_IP/" || ip addr add "$NODE_IP/32" dev lo ||
    fail "cluster network" "could not add $NODE_IP/32 to lo (set GANTRY_TESTBED_NODE_IP to a free address)"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 >/dev/null 2>&1 ||
    fail "cluster network" "could not enable ip_forward and bridge-nf-call-iptables (br_netfilter)"
  ok "cluster network (node address $NODE_IP on lo)"
}
# port_free COMPONENT HOST PORT PIDFILE PATTERN: fails naming the process when another process
# than the one the test bed started holds HOST:PORT
port_free() {
  local holder
  pid_of "$4" "$5" >/dev/null && return 0
  (exec 3<>"/dev/tcp/$2/$3") 2>/dev/null || return 0
  holder=$(ss -ltnpH "sport = :$3" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n1)
  fail "$1" "port $2:$3 is taken by ${holder:-another process}; stop it or free the port"
}
# component NAME PIDFILE-PATTERN READY-CHECK CMD...: (re)starts NAME when it is down or its
# configuration changed, then waits until READY-CHECK passes
component() {
  local name=$1 pat=$2 ready=$3 pidf=$CL/$1.pid log=$CL_LOGS/$1.log
  shift 3
  if pid_of "$pidf" "$pat" >/dev/null; then
    if changed "$name"; then stop_pid "$name" "$pidf" "$pat" >/dev/null
    elif "$ready"; then ok "$name (running)"; return; fi
  fi
  if ! pid_of "$pidf" "$pat" >/dev/null; then start_bg "$pidf" "$log" "$@"; fi
  wait_ready 120 "$pidf" "$pat" "$ready" || fail "$name" "not ready after 120s" "$log"
  ok "$name (pid $(<"$pidf"))"
}
etcd_ready() { curl -sf --max-time 2 http://127.0.0.1:2379/health | grep -q '"health":"true"'; }
apiserver_ready() { curl -sf --max-time 2 --cacert "$CL_PKI/ca.crt" --cert "$CL_PKI/admin.crt" --key "$CL_PKI/admin.key" "$API_URL/readyz" >/dev/null; }
cm_ready() { curl -skf --max-time 2 https://127.0.0.1:10257/healthz >/dev/null; }
scheduler_ready() { curl -skf --max-time 2 https://127.0.0.1:10259/healthz >/dev/null; }
containerd_ready() { ctr_ version >/dev/null 2>&1; }
kubelet_ready() { curl -sf --max-time 2 http://127.0.0.1:10248/healthz >/dev/null; }
proxy_ready() { curl -sf --max-time 2 http://127.0.0.1:10256/healthz >/dev/null; }
node_ready() { [[ $(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; }

cluster_images() { # the sandbox and CoreDNS images, imported (nothing can be pulled)
  local stage=$STATE/build/cluster-images
  if ! ctr_ -n k8s.io images check "name==$PAUSE_IMAGE" 2>/dev/null | grep -q complete; then
    rm -rf "$stage"; mkdir -p "$stage/pause"
    install -m 0755 "$CL_BIN/pause" "$stage/pause/pause"
    tar --numeric-owner -C "$stage/pause" -c pause | dock import --change 'ENTRYPOINT ["/pause"]' \
      --change "LABEL $LABEL" - "$PAUSE_IMAGE" >"$CL_LOGS/images.log" 2>&1 &&
      dock save "$PAUSE_IMAGE" | ctr_ -n k8s.io images import --no-unpack=false - >>"$CL_LOGS/images.log" 2>&1 ||
      fail "cluster images" "could not import $PAUSE_IMAGE into containerd" "$CL_LOGS/images.log"
  fi
  if ! ctr_ -n k8s.io images check "name==$COREDNS_IMAGE" 2>/dev/null | grep -q complete ||
     [[ $(<"$CL/coredns.key" 2>/dev/null) != "$(<"$CL_BIN/coredns/.key")" ]]; then
    rm -rf "$stage"; mkdir -p "$stage/coredns/etc"
    install -m 0755 "$CL_BIN/coredns/coredns" "$stage/coredns/coredns"
    printf 'root:x:0:0:root:/:/coredns\nnobody:x:65534:65534:nobody:/:/coredns\n' >"$stage/coredns/etc/passwd"
    tar --numeric-owner -C "$stage/coredns" -c . | dock import --change 'ENTRYPOINT ["/coredns"]' \
      --change "LABEL $LABEL" - "$COREDNS_IMAGE" >"$CL_LOGS/images.log" 2>&1 &&
      dock save "$COREDNS_IMAGE" | ctr_ -n k8s.io images import - >>"$CL_LOGS/images.log" 2>&1 ||
      fail "cluster images" "could not import $COREDNS_IMAGE into containerd" "$CL_LOGS/images.log"
    cp "$CL_BIN/coredns/.key" "$CL/coredns.key"
  fi
  rm -rf "$stage"
  ok "cluster images ($PAUSE_IMAGE, $COREDNS_IMAGE)"
}

cluster_start() {
  local k=$CL_BIN/kubernetes
  port_free etcd 127.0.0.1 2379 "$CL/etcd.pid" "$CL_BIN/etcd/etcd"
  component etcd "$CL_BIN/etcd/etcd" etcd_ready "$CL_BIN/etcd/etcd" --name "$NODE_NAME" \
    --data-dir "$CL/etcd" --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls "" --unsafe-no-fsync \
    --log-level warn
  port_free kube-apiserver "$NODE_IP" "$API_PORT" "$CL/kube-apiserver.pid" "$k/kube-apiserver"
  component kube-apiserver "$k/kube-apiserver" apiserver_ready "$k/kube-apiserver" \
    --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$API_PORT" \
    --etcd-servers http://127.0.0.1:2379 --service-cluster-ip-range "$SERVICE_CIDR" \
    --tls-cert-file "$CL_PKI/apiserver.crt" --tls-private-key-file "$CL_PKI/apiserver.key" \
    --client-ca-file "$CL_PKI/ca.crt" \
    --kubelet-client-certificate "$CL_PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$CL_PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$CL_PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$CL_PKI/sa.pub" --service-account-signing-key-file "$CL_PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged \
    --audit-policy-file "$CL/audit-policy.yaml" --audit-log-path "$CL_LOGS/audit.log" \
    --audit-log-maxsize 100 --audit-log-maxbackup 1 --profiling=false --v 1
  component kube-controller-manager "$k/kube-controller-manager" cm_ready "$k/kube-controller-manager" \
    --kubeconfig "$CL/controller-manager.kubeconfig" --authentication-kubeconfig "$CL/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$CL/controller-manager.kubeconfig" --bind-address 127.0.0.1 \
    --service-account-private-key-file "$CL_PKI/sa.key" --root-ca-file "$CL_PKI/ca.crt" \
    --use-service-account-credentials --cluster-signing-cert-file "$CL_PKI/ca.crt" \
    --cluster-signing-key-file "$CL_PKI/ca.key" --allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" \
    --node-cidr-mask-size 24 --service-cluster-ip-range "$SERVICE_CIDR" --enable-hostpath-provisioner \
    --leader-elect=false --profiling=false --v 1
  component kube-scheduler "$k/kube-scheduler" scheduler_ready "$k/kube-scheduler" \
    --kubeconfig "$CL/scheduler.kubeconfig" --authentication-kubeconfig "$CL/scheduler.kubeconfig" \
    --authorization-kubeconfig "$CL/scheduler.kubeconfig" --bind-address 127.0.0.1 \
    --leader-elect=false --profiling=false --v 1
  # Docker's dockerd runs its own containerd; this one has its own root, state and socket, and
  # finds its runc shim first on PATH.
  component containerd "$CL/containerd/config.toml" containerd_ready \
    env PATH="$CL_BIN/containerd:$PATH" "$CL_BIN/containerd/containerd" --config "$CL/containerd/config.toml"
  cluster_images
  component kubelet "$k/kubelet" kubelet_ready "$k/kubelet" --config "$CL/kubelet/config.yaml" \
    --kubeconfig "$CL/kubelet.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --root-dir "$CL/kubelet/root" --v 1
  component kube-proxy "$k/kube-proxy" proxy_ready "$k/kube-proxy" --config "$CL/kube-proxy.yaml" --v 1
  wait_for 120 node_ready || fail kubelet "node $NODE_NAME did not become Ready within 120s" "$CL_LOGS/kubelet.log"
  ok "node $NODE_NAME Ready ($("$k/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" version -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | tail -n1))"
}

# ----------------------------------------------------------------- add-ons
cluster_addons() {
  local applied log=$CL_LOGS/addons.log
  applied=$( { sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@DNS_IP@|$DNS_IP|g" "$CLUSTER_SRC/addons.yaml"
               echo ---; cat "$HERE/../examples/cluster/gantry-rbac.yaml"; } |
    kc apply --server-side --field-manager gantry-testbed --force-conflicts -f - 2>&1) ||
    { echo "$applied" >"$log"; fail "cluster add-ons" "kubectl apply failed" "$log"; }
  echo "$applied" >"$log"
  kc -n kube-system rollout status deployment/coredns --timeout 120s >>"$log" 2>&1 ||
    fail "cluster add-ons" "CoreDNS did not become ready" "$log"
  deployer_kubeconfig
  ok "cluster add-ons (CoreDNS, StorageClass standard, gantry RBAC)"
}
deployer_ok() { "$KUBECTL" --kubeconfig "$DEPLOYER_KUBECONFIG" auth can-i create leases.coordination.k8s.io -n default >/dev/null 2>&1; }
# A kubeconfig for the deployer ServiceAccount: what the tests run gantry as (not admin).
deployer_kubeconfig() {
  if [[ -s $DEPLOYER_KUBECONFIG && $(find "$DEPLOYER_KUBECONFIG" -mmin -1440 2>/dev/null) ]] && deployer_ok; then return; fi
  local token
  token=$(kc -n "$DEPLOYER_NAMESPACE" create token gantry --duration 168h 2>>"$CL_LOGS/addons.log") ||
    fail "cluster add-ons" "could not make a token for $DEPLOYER_NAMESPACE/gantry" "$CL_LOGS/addons.log"
  cat <<EOF | write_if_changed "$DEPLOYER_KUBECONFIG" 0600 || true
apiVersion: v1
kind: Config
clusters:
- name: gantry-testbed
  cluster:
    server: $API_URL
    certificate-authority: $CL_PKI/ca.crt
users:
- name: gantry
  user:
    token: $token
contexts:
- name: gantry@gantry-testbed
  context: {cluster: gantry-testbed, user: gantry, namespace: default}
current-context: gantry@gantry-testbed
EOF
  touch "$DEPLOYER_KUBECONFIG"
  deployer_ok || fail "cluster add-ons" "the deployer identity cannot use its rights (RBAC not applied?)" "$CL_LOGS/addons.log"
}

# ----------------------------------------------------------------- commands
cluster_packages() { printf '%s\n' "${CLUSTER_APT_PACKAGES[@]}"; }
cluster_up() {
  mkdir -p "$CL" "$CL_LOGS"
  cluster_build
  cluster_pki
  cluster_config
  cluster_host
  cluster_start
  cluster_addons
}
cluster_check() {
  local c
  for c in etcd:etcd_ready kube-apiserver:apiserver_ready kube-controller-manager:cm_ready \
           kube-scheduler:scheduler_ready containerd:containerd_ready kubelet:kubelet_ready \
           kube-proxy:proxy_ready; do
    if "${c#*:}"; then ok "${c%%:*}"; else fail "${c%%:*}" "not answering" "$CL_LOGS/${c%%:*}.log"; fi
  done
  if [[ -x $KUBECTL ]] && node_ready; then ok "node $NODE_NAME Ready"; else fail "node" "$NODE_NAME is not Ready"; fi
  if [[ -s $DEPLOYER_KUBECONFIG ]] && deployer_ok; then ok "deployer kubeconfig"; else fail "deployer kubeconfig" "missing or refused"; fi
}
cluster_down() {
  local k=$CL_BIN/kubernetes
  stop_pid kube-proxy "$CL/kube-proxy.pid" "$k/kube-proxy"
  stop_pid kubelet "$CL/kubelet.pid" "$k/kubelet"
  # The pods' containers live on in their shims without the kubelet: stop them with containerd.
  if containerd_ready; then
    local t
    for t in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do ctr_ -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
    sleep 1
    for t in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do ctr_ -n k8s.io tasks rm -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop_pid containerd "$CL/containerd.pid" "$CL/containerd/config.toml"
  pkill -f "containerd-shim-runc-v2 -namespace k8s.io -address $CTR_SOCK" 2>/dev/null || true
  stop_pid kube-scheduler "$CL/kube-scheduler.pid" "$k/kube-scheduler"
  stop_pid kube-controller-manager "$CL/kube-controller-manager.pid" "$k/kube-controller-manager"
  stop_pid kube-apiserver "$CL/kube-apiserver.pid" "$k/kube-apiserver"
  stop_pid etcd "$CL/etcd.pid" "$CL_BIN/etcd/etcd"
}
cluster_env_lines() {
  cat <<EOF
GANTRY_TEST_KUBECONFIG=$DEPLOYER_KUBECONFIG
GANTRY_TEST_ADMIN_KUBECONFIG=$ADMIN_KUBECONFIG
GANTRY_TEST_KUBECTL=$KUBECTL
GANTRY_TEST_K8S_VERSION=$K8S_VERSION
GANTRY_TEST_API_SERVER=$API_URL
GANTRY_TEST_AUDIT_LOG=$CL_LOGS/audit.log
EOF
}
