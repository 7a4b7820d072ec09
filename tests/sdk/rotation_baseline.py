"""The seed's rotation script approach, as a baseline for the operator's benchmark.

For each of M tokens, one after the other, with the official Databricks SDK: list the caller's
tokens to find the current one (by its comment), create a replacement, delete the old one.

  rotation_baseline.py seed M     create M tokens (comments baseline-0 .. baseline-M-1)
  rotation_baseline.py rotate M   rotate each once; prints {"rotations": M, "seconds": S}

Env: DATABRICKS_HOST, DATABRICKS_TOKEN (an emulator admin PAT). Token values are never printed.
"""

import json
import os
import sys
import time

from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config


def client():
    return WorkspaceClient(
        config=Config(
            host=os.environ["DATABRICKS_HOST"],
            token=os.environ["DATABRICKS_TOKEN"],
            auth_type="pat",
            retry_timeout_seconds=30,
            http_timeout_seconds=30,
        )
    )


def seed(w, m):
    for i in range(m):
        w.tokens.create(comment=f"baseline-{i}", lifetime_seconds=86400)


def rotate(w, m):
    started = time.monotonic()
    for i in range(m):
        comment = f"baseline-{i}"
        old = [t.token_id for t in w.tokens.list() if t.comment == comment]
        w.tokens.create(comment=comment, lifetime_seconds=86400)
        for token_id in old:
            w.tokens.delete(token_id=token_id)
    return time.monotonic() - started


def main():
    mode, m = sys.argv[1], int(sys.argv[2])
    w = client()
    if mode == "seed":
        seed(w, m)
        print(json.dumps({"seeded": m}))
    elif mode == "rotate":
        print(json.dumps({"rotations": m, "seconds": rotate(w, m)}))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
