#!/usr/bin/env bash
# A cached virtualenv at .cache/venv with the official Databricks Python SDK, used by the test
# that checks the emulator's wire format with a client nobody here wrote.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.cache/venv"
requirements="$root/tests/sdk/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -c1-64)"
if [[ -x "$venv/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
  echo "python-venv: up to date"
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
echo "$want" > "$stamp"
"$venv/bin/python" -c 'from databricks.sdk.version import __version__ as v; print("python-venv: databricks-sdk", v)'
