"""Exercise the emulator with the official Databricks Python SDK (a client nobody here wrote).

Environment: EMULATOR_HOST, ADMIN_TOKEN, SP_APPLICATION_ID, SP_CLIENT_SECRET.
Prints one line per check; exits non-zero on the first failure.
"""
import os
import sys

from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import NotFound, PermissionDenied, DatabricksError

host = os.environ["EMULATOR_HOST"]
checks = 0


def check(name, condition, detail=""):
    global checks
    if not condition:
        print(f"FAIL {name} {detail}")
        sys.exit(1)
    checks += 1
    print(f"ok   {name}")


def client(token):
    return WorkspaceClient(config=Config(host=host, token=token, auth_type="pat", retry_timeout_seconds=5, http_timeout_seconds=5))


admin = client(os.environ["ADMIN_TOKEN"])

# tokens API: create, list, delete
created = admin.tokens.create(comment="sdk check", lifetime_seconds=600)
check("tokens.create returns a dapi value", created.token_value.startswith("dapi") and len(created.token_value) == 36)
info = created.token_info
check("tokens.create returns token_info with epoch-ms times", info.expiry_time - info.creation_time == 600_000, f"{info}")
check("tokens.create keeps the comment", info.comment == "sdk check")
listed = [t.token_id for t in admin.tokens.list()]
check("tokens.list includes the new token", info.token_id in listed)
minted = client(created.token_value)
check("a minted token authenticates", any(t.token_id == info.token_id for t in minted.tokens.list()))
admin.tokens.delete(token_id=info.token_id)
check("tokens.delete removes it", info.token_id not in [t.token_id for t in admin.tokens.list()])

try:
    minted.tokens.list()
    check("a revoked token is refused", False)
except PermissionDenied as e:
    check("a revoked token is refused as PermissionDenied (403)", "Invalid access token" in str(e), str(e))
except DatabricksError as e:
    check("a revoked token is refused with 403", "Invalid access token" in str(e), f"{type(e)} {e}")

try:
    admin.tokens.delete(token_id="does-not-exist")
    check("deleting an unknown token fails", False)
except NotFound as e:
    check("deleting an unknown token is NotFound (404 RESOURCE_DOES_NOT_EXIST)", "No valid token" in str(e), str(e))

# token-management: on-behalf-of create, list with filters, get, delete
app_id = os.environ["SP_APPLICATION_ID"]
obo = admin.token_management.create_obo_token(application_id=app_id, lifetime_seconds=300, comment="obo check")
check("create_obo_token returns a value and info", obo.token_value.startswith("dapi") and obo.token_info.token_id)
managed = list(admin.token_management.list())
entry = next((t for t in managed if t.token_id == obo.token_info.token_id), None)
check("token_management.list shows the OBO token", entry is not None)
check("OBO token is owned by the service principal and created by the admin", entry.owner_id != entry.created_by_id, f"{entry}")
by_creator = list(admin.token_management.list(created_by_id=entry.created_by_id))
check("token_management.list filters by created_by_id", all(t.created_by_id == entry.created_by_id for t in by_creator) and by_creator)
got = admin.token_management.get(token_id=obo.token_info.token_id)
check("token_management.get returns token_info", got.token_info.token_id == obo.token_info.token_id)
admin.token_management.delete(token_id=obo.token_info.token_id)
check("token_management.delete removes it", all(t.token_id != obo.token_info.token_id for t in admin.token_management.list()))
try:
    admin.token_management.get(token_id=obo.token_info.token_id)
    check("get of a deleted token fails", False)
except NotFound:
    check("get of a deleted token is NotFound", True)

non_admin = client(minted_sp_token := admin.token_management.create_obo_token(application_id=app_id, lifetime_seconds=60).token_value)
try:
    list(non_admin.token_management.list())
    check("token-management is admin-only", False)
except PermissionDenied:
    check("token-management is admin-only (PermissionDenied)", True)

# OAuth M2M with the service principal's secret, over plain http to the emulator
m2m = WorkspaceClient(
    config=Config(
        host=host,
        client_id=app_id,
        client_secret=os.environ["SP_CLIENT_SECRET"],
        auth_type="oauth-m2m",
        retry_timeout_seconds=5,
        http_timeout_seconds=5,
    )
)
me = m2m.current_user.me()
check("OAuth M2M authenticates as the service principal", me.user_name == app_id, f"{me}")
own = m2m.tokens.create(lifetime_seconds=120, comment="m2m")
check("an M2M service principal mints its own PAT", own.token_value.startswith("dapi"))

print(f"{checks} passed, 0 failed")
