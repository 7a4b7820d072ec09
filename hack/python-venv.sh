#!/usr/bin/env bash
# A cached virtualenv at .cache/venv with the official Databricks Python SDK (pinned in
# tests/sdk/requirements.txt), used by the test that checks the emulator's wire format with a
# client nobody here wrote. Idempotent: does nothing when the venv matches the requirements.
# Concurrent callers (parallel test binaries) wait on a lock instead of racing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.cache/venv"
requirements="$root/tests/sdk/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -c1-64)"

up_to_date() {
  [[ -x "$venv/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]] &&
    "$venv/bin/python" -c 'import databricks.sdk' 2>/dev/null
}

mkdir -p "$root/.cache"
exec 9>"$root/.cache/venv.lock"
flock 9
if up_to_date; then
  echo "python-venv: up to date ($venv)"
  exit 0
fi
command -v python3 >/dev/null || { echo "python-venv: python3 is required" >&2; exit 1; }
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
echo "$want" > "$stamp"
"$venv/bin/python" -c 'from databricks.sdk.version import __version__ as v; print("python-venv: databricks-sdk", v)'
