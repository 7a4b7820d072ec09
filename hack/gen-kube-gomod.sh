#!/usr/bin/env bash
# Points hack/tools/kube (the module that builds kube-apiserver and etcd) at another Kubernetes
# release:
#
#   hack/gen-kube-gomod.sh v1.35.4 [MODULE_DIR]
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0
# and replaces them with ./staging/src/...; a module that depends on it must replace each with
# the matching published tag, k8s.io/<name> v0.<minor>.<patch>. The list changes between minors,
# so it is read from the release's own go.mod (`go mod download -json k8s.io/kubernetes@vX`),
# together with its go directive and the etcd version it pins. Then `go mod tidy` refreshes
# go.sum. Review and commit go.mod and go.sum; hack/build-tools.sh rebuilds on the next run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${1:-}"
dir="${2:-$root/hack/tools/kube}"
[[ "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || {
  sed -n '2,12p' "$0" >&2
  exit 2
}
staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
export GOWORK=off GOFLAGS=-mod=mod

upstream="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$version" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[[ -f "$upstream" ]] || { echo "gen-kube-gomod: no go.mod downloaded for k8s.io/kubernetes@$version" >&2; exit 1; }

go_directive="$(awk '$1 == "go" {print $2; exit}' "$upstream")"
# etcd's server is only an indirect requirement upstream; its client is pinned to the same release.
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$upstream")"
[[ -n "$etcd_version" ]] ||
  etcd_version="$(awk '$1 == "go.etcd.io/etcd/client/v3" {print $2; exit}' "$upstream")"
mapfile -t staging < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\/src\// {print $1}' "$upstream" | sort -u)
((${#staging[@]})) || { echo "gen-kube-gomod: no staging replaces in $upstream" >&2; exit 1; }

# Rewrite the replace block as one block: drop every k8s.io replace first (a module that left
# the staging list must not linger), keep any other replace.
awk '
  /^replace \($/ { block = 1; next }
  block && /^\)$/ { block = 0; next }
  block && $1 ~ /^k8s\.io\// { next }
  block { kept = kept $0 "\n"; next }
  /^replace k8s\.io\// { next }
  { print }
  END {
    printf "replace (\n%s", kept
  }
' "$dir/go.mod" >"$dir/go.mod.new"
for m in "${staging[@]}"; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done >>"$dir/go.mod.new"
echo ")" >>"$dir/go.mod.new"
mv "$dir/go.mod.new" "$dir/go.mod"

edits=(-go="$go_directive" -require="k8s.io/kubernetes@$version" -require="go.etcd.io/etcd/server/v3@$etcd_version")
(cd "$dir" && go mod edit "${edits[@]}" && go mod tidy)
echo "gen-kube-gomod: $dir now builds Kubernetes $version (go $go_directive, etcd $etcd_version," \
  "${#staging[@]} staging modules at $staging_version); review and commit go.mod and go.sum"
