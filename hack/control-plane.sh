#!/usr/bin/env bash
# A local Kubernetes control plane (etcd + kube-apiserver with RBAC + kube-controller-manager) on
# loopback, for tests and the demo. Binaries come from hack/build-tools.sh.
#
# kube-controller-manager runs only the controllers deletion depends on: namespace (a deleted
# namespace empties and goes away), garbage collector (ownerReferences are collected) and
# serviceaccount-token. No scheduler or kubelet: pods never run.
#
#   hack/control-plane.sh start [DIR]   start in the background; prints the kubeconfig path
#   hack/control-plane.sh stop  [DIR]   stop it and remove its state
#   hack/control-plane.sh status [DIR]
#   hack/control-plane.sh run   [DIR]   start, then stay in the foreground until SIGTERM/SIGINT
#                                       (the test fixture uses this; it owns the lifetime)
#
# DIR defaults to .cache/control-plane. The admin kubeconfig is DIR/kubeconfig; DIR/ready appears
# when /readyz answers ok, the default namespace exists and kube-controller-manager's /healthz
# answers ok.
set -euo pipefail
umask 077 # the directory holds the admin token and the CA key
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.cache/bin"
cmd="${1:-}"
dir="${2:-$root/.cache/control-plane}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

pids_alive() { # any process of this control plane still running
  local any=1
  for f in "$dir"/*.pid; do
    [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && any=0
  done
  return $any
}

components=(etcd kube-apiserver kube-controller-manager)

all_alive() { # every component running
  local name
  for name in "${components[@]}"; do
    [[ -f "$dir/$name.pid" ]] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null || return 1
  done
}

stop() {
  for f in "$dir"/kube-controller-manager.pid "$dir"/kube-apiserver.pid "$dir"/etcd.pid; do
    [[ -f "$f" ]] || continue
    local pid; pid="$(cat "$f")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

clear_dir() { # only ever delete a directory this script made (older ones had no marker)
  if [[ -d "$dir" && -n "$(ls -A "$dir")" && ! -f "$dir/.dbtoken-control-plane" &&
        ! (-f "$dir/tokens.csv" && -f "$dir/pki/ca.crt") ]]; then
    echo "control-plane: $dir is not empty and not a control plane directory; not touching it" >&2
    exit 1
  fi
  rm -rf "$dir"
}

make_pki() {
  local pki="$dir/pki"
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=dbtoken-local-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$pki/server.ext"
  openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -extfile "$pki/server.ext" -out "$pki/server.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

write_kubeconfig() { # path port user token
  cat > "$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$2
    certificate-authority-data: $(base64 -w0 < "$dir/pki/ca.crt")
users:
- name: $3
  user:
    token: $4
contexts:
- name: local
  context: {cluster: local, user: $3, namespace: default}
current-context: local
KUBECONFIG
}

start() {
  for b in "${components[@]}"; do
    [[ -x "$bin/$b" ]] || { echo "control-plane: $bin/$b missing; run hack/build-tools.sh" >&2; exit 1; }
  done
  if pids_alive; then echo "control-plane: already running in $dir" >&2; exit 1; fi
  clear_dir
  mkdir -p "$dir"; touch "$dir/.dbtoken-control-plane"
  make_pki
  local etcd_port peer_port api_port kcm_port token kcm_token
  etcd_port="$(free_port)"; peer_port="$(free_port)"; api_port="$(free_port)"; kcm_port="$(free_port)"
  token="$(openssl rand -hex 24)"; kcm_token="$(openssl rand -hex 24)"
  # kube-controller-manager runs its controllers under its own identity
  # (--use-service-account-credentials=false), and the namespace controller deletes every kind.
  printf '%s\n' "$token,admin,admin,system:masters" \
    "$kcm_token,system:kube-controller-manager,kube-controller-manager,system:masters" > "$dir/tokens.csv"

  "$bin/etcd" --name local --data-dir "$dir/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "local=http://127.0.0.1:$peer_port" --log-level warn </dev/null >"$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"

  "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$dir/pki/server.crt" --tls-private-key-file "$dir/pki/server.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
    --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
    --disable-admission-plugins ServiceAccount \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --cert-dir "$dir/pki" </dev/null >"$dir/kube-apiserver.log" 2>&1 &
  echo $! > "$dir/kube-apiserver.pid"

  write_kubeconfig "$dir/kubeconfig" "$api_port" admin "$token"
  write_kubeconfig "$dir/kube-controller-manager.kubeconfig" "$api_port" kube-controller-manager "$kcm_token"

  # Cheap settings for two shared cores: few workers, no leader election, loopback only.
  "$bin/kube-controller-manager" --kubeconfig "$dir/kube-controller-manager.kubeconfig" \
    --controllers namespace-controller,garbage-collector-controller,serviceaccount-token-controller \
    --leader-elect=false --use-service-account-credentials=false \
    --concurrent-gc-syncs 2 --concurrent-namespace-syncs 2 --concurrent-serviceaccount-token-syncs 1 \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$dir/kcm-pki" \
    </dev/null >"$dir/kube-controller-manager.log" 2>&1 &
  echo $! > "$dir/kube-controller-manager.pid"

  local deadline=$((SECONDS + 120))
  until curl -sf --cacert "$dir/pki/ca.crt" -H "Authorization: Bearer $token" \
        "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1 &&
        curl -sf --cacert "$dir/pki/ca.crt" -H "Authorization: Bearer $token" \
        "https://127.0.0.1:$api_port/api/v1/namespaces/default" >/dev/null 2>&1 &&
        curl -sfk "https://127.0.0.1:$kcm_port/healthz" >/dev/null 2>&1; do
    if (( SECONDS > deadline )) || ! all_alive; then
      echo "control-plane: not ready; last log lines:" >&2
      tail -n 20 "$dir"/*.log >&2 || true
      stop; exit 1
    fi
    sleep 0.2
  done
  touch "$dir/ready"
  echo "$dir/kubeconfig"
}

case "$cmd" in
  start) start ;;
  stop) stop; clear_dir ;;
  status)
    if all_alive && [[ -f "$dir/ready" ]]; then echo "running: $dir/kubeconfig"
    elif pids_alive; then echo "degraded or starting (see $dir/*.log)"; exit 1
    else echo "stopped"; exit 1; fi ;;
  run)
    trap 'stop; clear_dir; exit 0' TERM INT HUP
    start
    # Stay up until told to stop; exit (and clean up) if any process dies.
    while all_alive; do sleep 1 & wait $!; done
    echo "control-plane: a process exited; last log lines:" >&2
    tail -n 20 "$dir"/*.log >&2 || true
    stop; exit 1 ;;
  *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
