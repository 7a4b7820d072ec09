#!/usr/bin/env bash
# Builds the local test control plane (kube-apiserver, kube-controller-manager, etcd), helm and
# promtool from their upstream Go modules (hack/tools/kube, hack/tools/helm, hack/tools/prometheus)
# into .cache/bin. No release binary is downloaded.
#
# Cached: a binary is rebuilt only when its stamp changes. The stamp hashes everything that goes
# into the build (go.mod, go.sum, the package, the ldflags, the Go version), so a second run
# takes well under a second. Cold (empty GOCACHE) on 2 busy cores: 11 min (kube-apiserver 525 s,
# etcd 12 s, helm 104 s); with GOCACHE warm a rebuild takes ~25 s.
#
# promtool (the alert rule tests of `make test`): cold 4 min, built without Prometheus' service
# discovery plugins (`remove_all_sd`), which only the server uses.
#
#   BIN_DIR=/elsewhere hack/build-tools.sh   build into another directory
#   hack/build-tools.sh prometheus           also the Prometheus server, for `make test-prometheus`
#                                            (cold ~6 min more on 2 busy cores, so not by default)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${BIN_DIR:-$root/.cache/bin}"
mkdir -p "$bin"
command -v go >/dev/null || {
  echo "build-tools: Go is required (go 1.25 or newer for kube-apiserver, etcd and helm; 1.26.7 or newer for promtool and prometheus)" >&2
  exit 1
}
export GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false

# The version Kubernetes reports must be the real one: clients and kubectl read it.
mod_version() { # module-dir module-path
  awk -v m="$2" '($1 == m && $2 ~ /^v/) {print $2} ($1 == "require" && $2 == m) {print $3}' "$1/go.mod" | sed -n 1p
}
kube_dir="$root/hack/tools/kube"
helm_dir="$root/hack/tools/helm"
KUBE_VERSION="$(mod_version "$kube_dir" k8s.io/kubernetes)"
HELM_VERSION="$(mod_version "$helm_dir" helm.sh/helm/v3)"
[[ "$KUBE_VERSION" =~ ^v1\.([0-9]+)\. ]] || {
  echo "build-tools: no k8s.io/kubernetes version in $kube_dir/go.mod" >&2
  exit 1
}
KUBE_MINOR="${BASH_REMATCH[1]}"
[[ -n "$HELM_VERSION" ]] || { echo "build-tools: no helm.sh/helm/v3 version in $helm_dir/go.mod" >&2; exit 1; }
# As helm's own Makefile does: default capabilities follow the client-go helm was built with.
HELM_K8S_MINOR="$(mod_version "$helm_dir" k8s.io/client-go | cut -d. -f2)"
GO_VERSION="$(go env GOVERSION)"

PROMETHEUS_MODULE_VERSION="$(mod_version "$root/hack/tools/prometheus" github.com/prometheus/prometheus)"
# The Go module v0.316.0 is Prometheus 3.16.0.
[[ "$PROMETHEUS_MODULE_VERSION" =~ ^v0\.([0-9])([0-9]+)\.([0-9]+)$ ]] || {
  echo "build-tools: no github.com/prometheus/prometheus version in hack/tools/prometheus/go.mod" >&2
  exit 1
}
PROMETHEUS_VERSION="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}"

build() { # name module-dir package ldflags [build tags]
  local name="$1" dir="$2" pkg="$3" ldflags="-s -w $4" tags="${5:-}"
  local stamp
  stamp="$( (cat "$dir/go.mod" "$dir/go.sum"; echo "$pkg $ldflags $tags $GO_VERSION") | sha256sum | cut -c1-16)"
  if [[ -x "$bin/$name" && "$(cat "$bin/.$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "build-tools: $name is up to date"
    return
  fi
  echo "build-tools: building $name ($pkg, $GO_VERSION) ..."
  local start=$SECONDS
  # Build to a temporary name: an interrupted build never leaves a half-written binary behind.
  (cd "$dir" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg")
  mv -f "$bin/.$name.tmp" "$bin/$name"
  echo "$stamp" >"$bin/.$name.stamp"
  echo "build-tools: built $name in $((SECONDS - start))s"
}

total=$SECONDS
v=k8s.io/component-base/version
build kube-apiserver "$kube_dir" k8s.io/kubernetes/cmd/kube-apiserver \
  "-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$KUBE_MINOR -X $v.gitTreeState=clean"
build kube-controller-manager "$kube_dir" k8s.io/kubernetes/cmd/kube-controller-manager \
  "-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$KUBE_MINOR -X $v.gitTreeState=clean"
build etcd "$kube_dir" ./etcd ""
h=helm.sh/helm/v3
build helm "$helm_dir" $h/cmd/helm \
  "-X $h/internal/version.version=$HELM_VERSION -X $h/internal/version.gitTreeState=clean \
   -X $h/pkg/chartutil.k8sVersionMajor=1 -X $h/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR \
   -X $h/pkg/lint/rules.k8sVersionMajor=1 -X $h/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
pv=github.com/prometheus/common/version
prom_ldflags="-X $pv.Version=$PROMETHEUS_VERSION -X $pv.Branch=HEAD -X $pv.Revision=$PROMETHEUS_MODULE_VERSION"
build promtool "$root/hack/tools/prometheus" github.com/prometheus/prometheus/cmd/promtool "$prom_ldflags" remove_all_sd
if [[ " $* " == *" prometheus "* ]]; then
  build prometheus "$root/hack/tools/prometheus" github.com/prometheus/prometheus/cmd/prometheus "$prom_ldflags" remove_all_sd
fi
echo "build-tools: $("$bin/kube-apiserver" --version), etcd $("$bin/etcd" --version | awk 'NR==1 {print $3}'), helm $("$bin/helm" version --short), promtool $PROMETHEUS_VERSION in $bin ($((SECONDS - total))s)"
