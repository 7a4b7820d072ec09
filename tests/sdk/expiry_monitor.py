"""The seed's TokenExpiryMonitor, as a test fixture: the operator's inventory must report the
same expiring tokens as the script platform teams run from cron today.

The class below is carried over from the Databricks token reference this project is built
from (shared/reference/003_23acfde22c53db77.txt, "Token Expiry Monitor"): it is that document's
own code, reproduced so the comparison runs the seed's logic, not a re-implementation. Changes,
all marked "fixture:": the token list is fetched in one method (`_tokens`) so it can come from
the official SDK; `send_alert` (SMTP) is left out; its output is JSON.

  expiry_monitor.py sdk    every token of the workspace, through the official Databricks SDK
                           (WorkspaceClient.token_management.list), as an admin would run it
  expiry_monitor.py seed   the seed's own request: GET /api/2.0/token/list (the caller's tokens)

Env: DATABRICKS_HOST, DATABRICKS_TOKEN. Prints {"expiring": [...], "report": "..."}; token
values are never read or printed (the list APIs carry none).
"""

import json
import os
import sys
from datetime import datetime, timedelta  # noqa: F401 (as in the seed)
from typing import Dict, List

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config


class TokenExpiryMonitor:
    """Monitor token expiration and send alerts"""

    def __init__(self, host: str, token: str):
        self.host = host.rstrip('/')
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    # fixture: the seed inlines this request in both methods below.
    def _tokens(self) -> List[Dict]:
        url = f"{self.host}/api/2.0/token/list"
        response = requests.get(url, headers=self.headers)
        return response.json().get("token_infos", [])

    def check_expiring_tokens(self, warning_days: int = 30) -> List[Dict]:
        """
        Check for tokens expiring within warning period

        Args:
            warning_days: Days before expiration to warn

        Returns:
            List of expiring token information
        """
        tokens = self._tokens()  # fixture: was the inline token/list request

        now_ms = int(datetime.now().timestamp() * 1000)
        warning_threshold = now_ms + (warning_days * 86400 * 1000)

        expiring = []
        for token in tokens:
            if "expiry_time" in token:
                expiry = token["expiry_time"]
                if now_ms <= expiry <= warning_threshold:
                    days_until = (expiry - now_ms) / (86400 * 1000)
                    expiring.append({
                        "token_id": token["token_id"],
                        "comment": token.get("comment", "No comment"),
                        "expiry_time": expiry,
                        "days_until_expiry": int(days_until)
                    })

        return sorted(expiring, key=lambda x: x["days_until_expiry"])

    def generate_report(self) -> str:
        """Generate token status report"""
        tokens = self._tokens()  # fixture: was the inline token/list request

        report = "Databricks Token Status Report\n"
        report += "=" * 70 + "\n\n"
        report += f"Total tokens: {len(tokens)}\n"
        report += f"Report date: {datetime.now().strftime('%Y-%m-%d %H:%M')}\n\n"

        # Categorize tokens
        expired = []
        expiring_soon = []
        active = []
        no_expiry = []

        now_ms = int(datetime.now().timestamp() * 1000)
        warning_ms = now_ms + (30 * 86400 * 1000)

        for token in tokens:
            if "expiry_time" not in token:
                no_expiry.append(token)
            elif token["expiry_time"] <= now_ms:
                expired.append(token)
            elif token["expiry_time"] <= warning_ms:
                expiring_soon.append(token)
            else:
                active.append(token)

        report += f"Expired: {len(expired)}\n"
        report += f"Expiring soon (30 days): {len(expiring_soon)}\n"
        report += f"Active: {len(active)}\n"
        report += f"No expiration: {len(no_expiry)}\n\n"

        if expiring_soon:
            report += "Tokens expiring soon:\n"
            report += "-" * 70 + "\n"
            for token in expiring_soon:
                days = (token["expiry_time"] - now_ms) / (86400 * 1000)
                report += f"  {token['token_id']}: {token.get('comment', 'N/A')} ({int(days)} days)\n"

        return report


class WorkspaceExpiryMonitor(TokenExpiryMonitor):
    """fixture: the same monitor over every token of the workspace, read with the official SDK."""

    def _tokens(self) -> List[Dict]:
        w = WorkspaceClient(
            config=Config(
                host=self.host,
                token=self.token,
                auth_type="pat",
                retry_timeout_seconds=30,
                http_timeout_seconds=30,
            )
        )
        return [t.as_dict() for t in w.token_management.list()]


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "sdk"
    kind = {"sdk": WorkspaceExpiryMonitor, "seed": TokenExpiryMonitor}[mode]
    monitor = kind(host=os.environ["DATABRICKS_HOST"], token=os.environ["DATABRICKS_TOKEN"])
    expiring = monitor.check_expiring_tokens(warning_days=30)
    print(json.dumps({"expiring": expiring, "report": monitor.generate_report()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
