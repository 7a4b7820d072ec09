"""The official Databricks Python SDK configured the way a pod using `envFrom` on a
DatabricksToken's Secret is: DATABRICKS_HOST and DATABRICKS_TOKEN (plus DATABRICKS_AUTH_TYPE=pat,
which keeps the emulator's plain-http host). One authenticated call; never prints the token.
"""
import sys

from databricks.sdk import WorkspaceClient

try:
    me = WorkspaceClient().current_user.me()
except Exception as e:  # the SDK's own error text names no token
    print(f"FAIL current_user.me: {type(e).__name__}: {e}")
    sys.exit(1)
print(f"ok   current_user.me as {me.user_name}")
