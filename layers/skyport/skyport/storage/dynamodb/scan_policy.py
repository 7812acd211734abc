"""Scan policies on the table (keys: ``storage/keys.py``, "scan policies"; what they mean:
skyport/scan_policy.py). Records are plain dicts of a policy's fields
(scan_policy.ScanPolicy builds itself from them)."""

from __future__ import annotations

from typing import Any

from .. import keys
from .table import N, S, Table, conditional, get_int, get_str

# One policy per repository pattern: `scan-policy add` never overwrites another silently.
POLICY_IS_NEW = "attribute_not_exists(PK)"
# `scan-policy add --replace`: replaces the policy of that pattern, which must exist.
POLICY_EXISTS = "attribute_exists(PK)"


class DynamoScanPolicyStore:
    """What skyport.scan_policy.ScanPolicyStore asks, on the table."""

    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def put_policy(self, fields: dict[str, Any], replace: bool) -> bool:
        """False: refused by the condition (a policy exists for the pattern, or with
        ``replace``, none does)."""
        item = {
            **keys.scan_policy(fields["repositories"]),
            "severity": S(fields["severity"]),
            "allow": {"L": [S(identifier) for identifier in fields["allow"]]},
            "require_scan": {"BOOL": bool(fields["require_scan"])},
            "created_ms": N(fields["created_ms"]),
        }
        condition = POLICY_EXISTS if replace else POLICY_IS_NEW
        ok, _, _ = conditional(lambda: self._table.put(item, condition))
        return ok

    def list_policies(self) -> list[dict[str, Any]]:
        """Every policy: one Query of the SCAN_POLICY partition (a page holds 1 MB, far
        more than MAX_POLICIES policies; further pages are read if ever there are any)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": S(keys.SCAN_POLICY)},
        }
        policies = []
        while True:
            page = self._table.call("query", **kwargs)
            policies.extend(_policy_fields(item) for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return policies
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def delete_policy(self, pattern: str) -> bool:
        return self._table.delete_existing(keys.scan_policy(pattern))


def _policy_fields(item: dict) -> dict[str, Any]:
    return {
        "repositories": item[keys.SK]["S"],
        "severity": get_str(item, "severity") or "",
        "allow": [value.get("S", "") for value in item.get("allow", {}).get("L", [])],
        "require_scan": bool(item.get("require_scan", {}).get("BOOL", False)),
        "created_ms": get_int(item, "created_ms"),
    }
