#!/usr/bin/env bash
# The operator's main job end to end on local defaults: a local control plane, the Databricks
# emulator, the CRDs, the operator, and a DatabricksToken with a one-minute lifetime. Shows the
# Secret, waits for a rotation and for the old token's revocation, mints through a workspace with no
# credential Secret (workload identity), takes an inventory of every token in the workspace,
# deletes the namespace (which revokes its tokens first), then tears everything down.
# Non-interactive; `KEEP=1 hack/demo.sh` leaves it all running for exploration.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="$root/.cache/demo"
bin="$root/target/debug"
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() {
  [[ "${KEEP:-0}" == 1 ]] && { echo "KEEP=1: leaving everything running (kubeconfig: $work/cp/kubeconfig)"; return; }
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  hack/control-plane.sh stop "$work/cp" >/dev/null 2>&1 || true
}
trap cleanup EXIT
say() { echo; echo "### $*"; }
wait_for() { # description timeout-seconds command...
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { echo "timed out waiting for: $what" >&2; exit 1; }
    sleep 1
  done
}

say "1. Local control plane (kube-apiserver, kube-controller-manager, etcd built from Go modules)"
export KUBECONFIG
KUBECONFIG="$(hack/control-plane.sh start "$work/cp")"
echo "kube-apiserver $(kubectl get --raw /version | python3 -c "import json,sys; print(json.load(sys.stdin)[\"gitVersion\"])")"

say "2. Databricks emulator with an admin user"
"$bin/databricks-emulator" --listen 127.0.0.1:0 --port-file "$work/emulator.addr" \
  --seed-admin-user admin@example.com --seed-output "$work/admin.json" > "$work/emulator.log" 2>&1 &
pids+=($!)
wait_for "emulator" 30 test -s "$work/emulator.addr"
host="http://$(cat "$work/emulator.addr")"
echo "workspace host: $host"

say "3. CRDs and the operator"
kubectl apply -f crds/ >/dev/null
kubectl wait --for condition=established --timeout=60s crd --all >/dev/null
"$bin/databricks-token-operator" --leader-election=false --insecure-allow-http \
  --metrics-addr 127.0.0.1:0 --verify-interval 15s --log-filter info > "$work/operator.log" 2>&1 &
pids+=($!)

say "4. A workspace (admin PAT in a Secret) and a DatabricksToken living 60s, rotated at 2/3"
kubectl create namespace demo >/dev/null
kubectl -n demo create secret generic databricks-admin \
  --from-literal=token="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pat"])' "$work/admin.json")" >/dev/null
kubectl apply -f - <<YAML
apiVersion: dbtoken.dev/v1alpha1
kind: DatabricksWorkspace
metadata: {name: local, namespace: demo}
spec:
  host: $host
  auth:
    pat:
      secretRef: {name: databricks-admin}
  # The demo mints the admin's own tokens; shared workspaces should not (README, "Tenancy").
  ownIdentityTokens: Allow
---
apiVersion: dbtoken.dev/v1alpha1
kind: DatabricksToken
metadata: {name: reports, namespace: demo}
spec:
  workspaceRef: {name: local}
  lifetime: 60s
  comment: nightly reports
  rotation:
    gracePeriod: 10s
  secret:
    databricksCfgProfile: DEFAULT
YAML
kubectl -n demo wait --for condition=Ready --timeout=60s dbtoken/reports
kubectl -n demo get dbtoken -o wide
first="$(kubectl -n demo get dbtoken reports -o jsonpath='{.status.tokenId}')"

say "5. The Secret (values hidden; annotations carry the token id and expiry)"
kubectl -n demo get secret reports -o json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("keys:", ", ".join(sorted(s["data"])))
for k, v in sorted(s["metadata"]["annotations"].items()):
    print(f"  {k}: {v}")'

say "6. Waiting for the rotation (renewal at ~40s)"
wait_for "a new token id" 120 bash -c "[ \"\$(kubectl -n demo get dbtoken reports -o jsonpath='{.status.tokenId}')\" != '$first' ]"
kubectl -n demo get dbtoken -o wide
echo "previous token $first is kept for the 10s grace period, then revoked:"
wait_for "old token revoked" 60 bash -c "! curl -sf '$host/_emulator/tokens' | grep -q '$first'"
echo "revoked: $first is no longer live in the workspace"
kubectl -n demo describe dbtoken reports | sed -n '/^Status:/,$p'

say "7. No credential Secret at all: workload identity (README, \"Workload identity\")"
# A service principal whose federation policy trusts the ServiceAccount demo/databricks; the
# policy carries the API server's published keys, as for any issuer Databricks cannot reach.
kubectl -n demo create serviceaccount databricks >/dev/null
sp="$(curl -sf -X POST "$host/_emulator/service-principals" -H 'content-type: application/json' \
  -d '{"display_name": "federated"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["application_id"])')"
issuer="$(kubectl get --raw /.well-known/openid-configuration | python3 -c 'import json,sys; print(json.load(sys.stdin)["issuer"])')"
kubectl get --raw /openid/v1/jwks | python3 -c '
import json, sys
print(json.dumps({"issuer": sys.argv[1], "audiences": [sys.argv[2] + "/oidc/v1/token"],
                  "subject": "system:serviceaccount:demo:databricks", "jwks_json": sys.stdin.read()}))' \
  "$issuer" "$host" | curl -sf -X POST "$host/_emulator/service-principals/$sp/federation-policies" \
  -H 'content-type: application/json' --data-binary @- >/dev/null
echo "federation policy of service principal $sp: issuer $issuer, subject system:serviceaccount:demo:databricks"
kubectl apply -f - <<YAML
apiVersion: dbtoken.dev/v1alpha1
kind: DatabricksWorkspace
metadata: {name: secretless, namespace: demo}
spec:
  host: $host
  auth:
    workloadIdentity:
      clientId: $sp
      serviceAccountRef: {name: databricks}
  ownIdentityTokens: Allow
---
apiVersion: dbtoken.dev/v1alpha1
kind: DatabricksToken
metadata: {name: federated, namespace: demo}
spec:
  workspaceRef: {name: secretless}
  lifetime: 1h
YAML
kubectl -n demo wait --for condition=Ready --timeout=60s dbtoken/federated
kubectl -n demo get dbws secretless
echo "and a short-lived OAuth access token instead of a PAT (README, \"PAT or OAuth\"), renewed at 2/3 of its lifetime:"
kubectl apply -f - <<YAML
apiVersion: dbtoken.dev/v1alpha1
kind: DatabricksToken
metadata: {name: federated-oauth, namespace: demo}
spec:
  workspaceRef: {name: secretless}
  type: oauth
YAML
kubectl -n demo wait --for condition=Ready --timeout=60s dbtoken/federated-oauth
kubectl -n demo get dbtoken federated federated-oauth
curl -sf "$host/_emulator/tokens" | python3 -c '
import json, sys
owners = sorted({t["owner_name"] for t in json.load(sys.stdin)["tokens"]})
print("owners of live tokens (admin PAT workspace, federated service principal):", ", ".join(owners))'

say "8. Every token of the workspace, watched (README, \"Token inventory\")"
# Two tokens the operator did not mint, as a workspace accumulates them: a laptop PAT that never
# expires and a CI token expiring in three days.
admin_id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/admin.json")"
curl -sf -X POST "$host/_emulator/tokens" -H 'content-type: application/json' \
  -d "{\"owner_id\": $admin_id, \"comment\": \"laptop\"}" >/dev/null
curl -sf -X POST "$host/_emulator/tokens" -H 'content-type: application/json' \
  -d "{\"owner_id\": $admin_id, \"comment\": \"ci\", \"lifetime_seconds\": 259200}" >/dev/null
kubectl -n demo patch dbws local --type merge -p '{"spec": {"inventory": {"interval": "10s"}}}' >/dev/null
wait_for "the first inventory" 60 bash -c "[ -n \"\$(kubectl -n demo get dbws local -o jsonpath='{.status.inventory.lastInventoryTime}')\" ]"
kubectl -n demo get dbws local -o wide
kubectl -n demo get dbws local -o jsonpath='{.status.inventory}' | python3 -m json.tool

say "9. Metrics"
addr="$(grep -o 'addr=[0-9.:]*' "$work/operator.log" | sed -n 1p | cut -d= -f2)"
curl -s "http://$addr/metrics" | grep -E '^dbtoken_(token_expiry|rotations|mints|revocations|databricks_requests|inventory_tokens)' | sed -n 1,20p

say "10. kubectl delete namespace demo: its tokens are revoked before the namespace goes"
kubectl delete namespace demo --timeout=120s
live="$(curl -sf "$host/_emulator/tokens" | { grep -o 'dbtoken.dev/uid=' || true; } | wc -l)"
echo "tokens minted by the operator still live in the workspace: $live"
[[ "$live" == 0 ]] || { echo "a token outlived its namespace" >&2; exit 1; }

say "Demo finished: a token was minted, rotated, the old one revoked, one minted with no stored credential, and the namespace deleted."
