#!/usr/bin/env bash
# Builds the static (musl) release binaries exactly as the Dockerfile's builder stage does, so CI
# proves the image's binaries build and are static even where no Docker engine runs: the
# operator, and the kubectl plugin released beside it (kubectl-dbtoken).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="$(uname -m)-unknown-linux-musl"
command -v musl-gcc >/dev/null || { echo "build-static: musl-gcc missing (apt-get install musl-tools)" >&2; exit 1; }
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
cargo build --release --locked --target "$target" --bin databricks-token-operator --bin kubectl-dbtoken
for name in databricks-token-operator kubectl-dbtoken; do
  bin="target/$target/release/$name"
  # A static(-pie) binary has no program interpreter (dynamic loader).
  if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
    echo "build-static: $bin needs a dynamic loader" >&2
    exit 1
  fi
  ls -l "$bin"
  "$bin" --version
done
