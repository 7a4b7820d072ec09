#!/usr/bin/env bash
# Builds the local test control plane (kube-apiserver, etcd) and helm from upstream Go modules
# into .cache/bin. No release binaries are downloaded. A second run takes seconds: each binary
# is rebuilt only when its go.mod/go.sum change (a stamp file records their hash).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.cache/bin"
mkdir -p "$bin"
export GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false

KUBE_VERSION="$(awk '/^require k8s.io\/kubernetes/ {print $3}' "$root/hack/tools/kube/go.mod")"
KUBE_MINOR="$(echo "$KUBE_VERSION" | cut -d. -f2)"

stamp_of() { cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-16; }

build() { # name module-dir package [ldflags]
  local name="$1" dir="$2" pkg="$3" ldflags="${4:-}"
  local stamp; stamp="$(stamp_of "$dir")"
  if [[ -x "$bin/$name" && "$(cat "$bin/.$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "build-tools: $name is up to date"
    return
  fi
  echo "build-tools: building $name ($pkg) ..."
  local start=$SECONDS
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$name" "$pkg")
  echo "$stamp" > "$bin/.$name.stamp"
  echo "build-tools: built $name in $((SECONDS - start))s"
}

version_pkg=k8s.io/component-base/version
build kube-apiserver "$root/hack/tools/kube" k8s.io/kubernetes/cmd/kube-apiserver \
  "-X $version_pkg.gitVersion=$KUBE_VERSION -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$KUBE_MINOR"
build etcd "$root/hack/tools/kube" ./etcd
build helm "$root/hack/tools/helm" helm.sh/helm/v3/cmd/helm
"$bin/kube-apiserver" --version
"$bin/helm" version --short
