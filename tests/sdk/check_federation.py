"""Workload identity federation with the official Databricks Python SDK against the emulator:
the SDK's own token-exchange auth types (file-oidc, env-oidc) exchange a JWT for the service
principal's OAuth token, so the emulator's exchange is checked by a client nobody here wrote.

Environment: EMULATOR_HOST, SP_APPLICATION_ID (a service principal whose federation policy
trusts SUBJECT_TOKEN), SUBJECT_TOKEN_FILE (a JWT the policy accepts), FOREIGN_TOKEN_FILE (a JWT
of another subject, signed by the same issuer). Prints one line per check and a summary; never
prints a token value.
"""
import os
import sys

from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config

host = os.environ["EMULATOR_HOST"].rstrip("/")
app_id = os.environ["SP_APPLICATION_ID"]
checks = 0


def check(name, condition, detail=""):
    global checks
    if not condition:
        print(f"FAIL {name} {detail}")
        sys.exit(1)
    checks += 1
    print(f"ok   {name}")


def client(**kwargs):
    return WorkspaceClient(
        config=Config(
            host=host,
            client_id=app_id,
            retry_timeout_seconds=5,
            http_timeout_seconds=5,
            **kwargs,
        )
    )


# file-oidc: the token file a projected ServiceAccount token volume would provide.
w = client(auth_type="file-oidc", oidc_token_filepath=os.environ["SUBJECT_TOKEN_FILE"])
me = w.current_user.me()
check("file-oidc authenticates as the service principal", me.user_name == app_id, me.user_name)
created = w.tokens.create(comment="sdk-federation", lifetime_seconds=600)
check("file-oidc mints a PAT", bool(created.token_info.token_id))
ids = [t.token_id for t in w.tokens.list()]
check("file-oidc lists the service principal's tokens", created.token_info.token_id in ids)
w.tokens.delete(token_id=created.token_info.token_id)
check("file-oidc revokes it", created.token_info.token_id not in [t.token_id for t in w.tokens.list()])

# env-oidc: the same JWT from DATABRICKS_OIDC_TOKEN.
with open(os.environ["SUBJECT_TOKEN_FILE"]) as f:
    os.environ["DATABRICKS_OIDC_TOKEN"] = f.read().strip()
w = client(auth_type="env-oidc")
check("env-oidc authenticates as the service principal", w.current_user.me().user_name == app_id)
del os.environ["DATABRICKS_OIDC_TOKEN"]

# A token of a subject no policy names is refused, and the SDK says so.
try:
    client(auth_type="file-oidc", oidc_token_filepath=os.environ["FOREIGN_TOKEN_FILE"]).current_user.me()
    check("a foreign subject is refused", False, "no error")
except Exception as e:  # the SDK wraps the token endpoint's refusal in its own error types
    check("a foreign subject is refused", "federation policy" in str(e), type(e).__name__)

print(f"{checks} passed, 0 failed")
