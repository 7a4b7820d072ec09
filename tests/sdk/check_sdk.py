"""Exercise the emulator with the official Databricks Python SDK (a client nobody here wrote).

Environment: EMULATOR_HOST (required); ADMIN_TOKEN, SP_APPLICATION_ID, SP_CLIENT_SECRET are
optional: missing identities are seeded through the emulator's /_emulator/ control API.
Prints one line per check; exits non-zero on the first failure. Never prints a token value.
"""
import os
import sys

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import (
    BadRequest,
    DatabricksError,
    InternalError,
    InvalidParameterValue,
    NotFound,
    PermissionDenied,
)

host = os.environ["EMULATOR_HOST"].rstrip("/")
checks = 0


def check(name, condition, detail=""):
    global checks
    if not condition:
        print(f"FAIL {name} {detail}")
        sys.exit(1)
    checks += 1
    print(f"ok   {name}")


def control(method, path, body=None):
    r = requests.request(method, f"{host}/_emulator/{path}", json=body, timeout=5)
    r.raise_for_status()
    return r.json() if r.content else None


def faults(*rules):
    control("PUT", "faults", {"rules": list(rules), "seed": 1})


def count(endpoint, method, status):
    rows = control("GET", "stats")["requests"]
    return sum(r["count"] for r in rows if (r["endpoint"], r["method"], r["status"]) == (endpoint, method, status))


def raises(call, error_class):
    """The error `call` raises, which must be an instance of `error_class`."""
    try:
        call()
    except error_class as e:
        return e
    except DatabricksError as e:
        check(f"{error_class.__name__} raised", False, f"got {type(e).__name__}: {e}")
    check(f"{error_class.__name__} raised", False, "no error")


def client(token):
    return WorkspaceClient(
        config=Config(host=host, token=token, auth_type="pat", retry_timeout_seconds=5, http_timeout_seconds=5)
    )


admin_token = os.environ.get("ADMIN_TOKEN") or control("POST", "users", {"user_name": "sdk-admin@example.com", "is_admin": True})["pat"]
if os.environ.get("SP_APPLICATION_ID"):
    app_id, sp_secret = os.environ["SP_APPLICATION_ID"], os.environ["SP_CLIENT_SECRET"]
else:
    seeded = control("POST", "service-principals", {"display_name": "sdk-bot", "is_admin": False})
    app_id, sp_secret = seeded["application_id"], seeded["client_secret"]
user_token = control("POST", "users", {"user_name": "sdk-user@example.com", "is_admin": False})["pat"]
admin = client(admin_token)
user = client(user_token)

# --- tokens API: create, list, delete -------------------------------------------------------
created = admin.tokens.create(comment="sdk check", lifetime_seconds=600, scopes=["sql"])
value, info = created.token_value, created.token_info
check("tokens.create returns a dapi value", value.startswith("dapi") and len(value) == 36)
check("tokens.create returns epoch-ms times", info.expiry_time - info.creation_time == 600_000, f"{info.creation_time} {info.expiry_time}")
check("tokens.create keeps the comment and scopes", info.comment == "sdk check" and info.scopes == ["sql"])
check("tokens.list includes the new token", info.token_id in [t.token_id for t in admin.tokens.list()])
check("tokens.list of another user does not", info.token_id not in [t.token_id for t in user.tokens.list()])
minted = client(value)
me = minted.current_user.me()
check("a minted token authenticates as its owner (current_user.me)", me.user_name == admin.current_user.me().user_name)
admin.tokens.delete(token_id=info.token_id)
check("tokens.delete removes it", info.token_id not in [t.token_id for t in admin.tokens.list()])

e = raises(lambda: list(minted.tokens.list()), PermissionDenied)
check("a revoked token is refused as PermissionDenied (403 Invalid access token.)", "Invalid access token" in str(e), str(e))
e = raises(lambda: client("dapi-not-a-real-token").current_user.me(), PermissionDenied)
check("an unknown token is refused as PermissionDenied", "Invalid access token" in str(e), str(e))

e = raises(lambda: admin.tokens.delete(token_id="does-not-exist"), NotFound)
check("deleting an unknown token is NotFound with RESOURCE_DOES_NOT_EXIST", e.error_code == "RESOURCE_DOES_NOT_EXIST" and "No valid token with ID does-not-exist found." in str(e), f"{e.error_code} {e}")

e = raises(lambda: admin.tokens.create(lifetime_seconds=731 * 86400), InvalidParameterValue)
check("a lifetime over the maximum is InvalidParameterValue naming the maximum", "maximum lifetime" in str(e), str(e))
e = raises(lambda: admin.tokens.create(lifetime_seconds=0), InvalidParameterValue)
check("a zero lifetime is InvalidParameterValue", e.error_code == "INVALID_PARAMETER_VALUE")

settings = control("GET", "settings")
control("PUT", "settings", {**settings, "quota_per_owner": 1})
e = raises(lambda: user.tokens.create(lifetime_seconds=60), BadRequest)
check("the quota is BadRequest with QUOTA_EXCEEDED", e.error_code == "QUOTA_EXCEEDED", f"{e.error_code} {e}")
control("PUT", "settings", settings)

# --- token-management: on-behalf-of create, list with filters, get, delete -------------------
obo = admin.token_management.create_obo_token(application_id=app_id, lifetime_seconds=300, comment="obo check")
check("create_obo_token returns a value and TokenInfo", obo.token_value.startswith("dapi") and obo.token_info.token_id and obo.token_info.owner_id)
managed = list(admin.token_management.list())
entry = next((t for t in managed if t.token_id == obo.token_info.token_id), None)
check("token_management.list shows the OBO token", entry is not None)
check("the OBO token is owned by the service principal, created by the admin", entry.owner_id != entry.created_by_id and entry.created_by_username == me.user_name, f"{entry}")
check("token_management.list carries workspace_id", isinstance(entry.workspace_id, int))
by_id = list(admin.token_management.list(created_by_id=entry.created_by_id))
check("token_management.list filters by created_by_id", by_id and all(t.created_by_id == entry.created_by_id for t in by_id))
by_name = list(admin.token_management.list(created_by_username=me.user_name))
check("token_management.list filters by created_by_username", {t.token_id for t in by_name} == {t.token_id for t in by_id})
got = admin.token_management.get(token_id=obo.token_info.token_id)
check("token_management.get returns token_info", got.token_info.token_id == obo.token_info.token_id and got.token_info.comment == "obo check")
check("the OBO value authenticates as the service principal", client(obo.token_value).current_user.me().user_name == app_id)
admin.token_management.delete(token_id=obo.token_info.token_id)
check("token_management.delete removes it", all(t.token_id != obo.token_info.token_id for t in admin.token_management.list()))
raises(lambda: admin.token_management.get(token_id=obo.token_info.token_id), NotFound)
check("get of a deleted token is NotFound", True)
raises(lambda: admin.token_management.delete(token_id=obo.token_info.token_id), NotFound)
check("delete of a deleted token is NotFound", True)
raises(lambda: admin.token_management.create_obo_token(application_id="00000000-0000-0000-0000-000000000000", lifetime_seconds=60), NotFound)
check("create_obo_token for an unknown application is NotFound", True)
raises(lambda: list(user.token_management.list()), PermissionDenied)
check("token-management is admin-only (PermissionDenied)", True)
control("PUT", "settings", {**settings, "obo_enabled": False})
e = raises(lambda: admin.token_management.create_obo_token(application_id=app_id, lifetime_seconds=60), PermissionDenied)
check("OBO disabled is PermissionDenied saying it is not enabled", "not enabled" in str(e), str(e))
control("PUT", "settings", settings)

# --- faults as the SDK sees them --------------------------------------------------------------
faults({"endpoint": "token/list", "rate_limit_rate": 1.0, "retry_after_seconds": 1, "limit": 1})
admin.tokens.list()
check("a 429 with Retry-After is retried by the SDK and then succeeds", count("token/list", "GET", 429) == 1)
faults({"endpoint": "token-management/list", "error_rate": 1.0, "error_status": 503, "limit": 1})
list(admin.token_management.list())
check("a 503 TEMPORARILY_UNAVAILABLE is retried by the SDK", count("token-management/list", "GET", 503) == 1)
faults({"endpoint": "token/list", "error_rate": 1.0, "error_status": 500})
e = raises(lambda: list(admin.tokens.list()), InternalError)
check("a 500 is InternalError and not retried", e.error_code == "INTERNAL_ERROR" and count("token/list", "GET", 500) == 1)
faults({"endpoint": "token/create", "drop_response_after_create_rate": 1.0, "limit": 1})
retried = admin.tokens.create(comment="dropped once", lifetime_seconds=60)
twins = [t for t in admin.tokens.list() if t.comment == "dropped once"]
check("a create whose connection dropped is retried by the SDK and mints twice", retried.token_value.startswith("dapi") and len(twins) == 2, f"{len(twins)}")
control("DELETE", "faults")

# --- OAuth M2M with the service principal's secret, over plain http ---------------------------
m2m = WorkspaceClient(
    config=Config(
        host=host,
        client_id=app_id,
        client_secret=sp_secret,
        auth_type="oauth-m2m",
        retry_timeout_seconds=5,
        http_timeout_seconds=5,
    )
)
who = m2m.current_user.me()
check("OAuth M2M authenticates as the service principal", who.user_name == app_id, f"{who.user_name}")
own = m2m.tokens.create(lifetime_seconds=120, comment="m2m")
check("an M2M service principal mints its own PAT", own.token_value.startswith("dapi"))
check("the M2M exchange went through discovery and the token endpoint", count("oidc/token", "POST", 200) >= 1 and count("oidc/discovery", "GET", 200) >= 1)
bad = WorkspaceClient(
    config=Config(host=host, client_id=app_id, client_secret="wrong", auth_type="oauth-m2m", retry_timeout_seconds=5, http_timeout_seconds=5)
)
try:
    bad.current_user.me()
    check("a wrong client secret is refused", False)
except Exception as e:  # the SDK wraps token endpoint failures in its own error types
    check("a wrong client secret is refused (invalid_client)", "invalid_client" in str(e) or "401" in str(e), f"{type(e).__name__}: {e}")

print(f"{checks} passed, 0 failed")
