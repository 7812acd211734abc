"""Tag immutability rules on the table (keys: ``storage/keys.py``, "Tag immutability";
the rules' meaning: skyport/immutability.py). Records are plain dicts of a rule's fields
(immutability.ImmutabilityRule builds itself from them)."""

from __future__ import annotations

from typing import Any

from .. import keys
from .table import N, S, Table, conditional, get_int, get_str

# A rule id is made once per `immutability add` (random): never overwrite another rule.
RULE_IS_NEW = "attribute_not_exists(PK)"


class DynamoImmutabilityStore:
    """What skyport.immutability.ImmutabilityStore asks, on the table."""

    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def create_rule(self, fields: dict[str, Any]) -> bool:
        item = {
            **keys.immutability_rule(fields["id"]),
            "repositories": S(fields["repositories"]),
            "exclude": {"L": [S(pattern) for pattern in fields["exclude"]]},
            "created_ms": N(fields["created_ms"]),
        }
        ok, _, _ = conditional(lambda: self._table.put(item, RULE_IS_NEW))
        return ok

    def list_rules(self) -> list[dict[str, Any]]:
        """Every rule: one Query of the IMMUTABILITY partition (a page holds 1 MB, far
        more than MAX_RULES rules; further pages are read if ever there are any)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": S(keys.IMMUTABILITY)},
        }
        rules = []
        while True:
            page = self._table.call("query", **kwargs)
            rules.extend(_rule_fields(item) for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return rules
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def delete_rule(self, rule_id: str) -> bool:
        return self._table.delete_existing(keys.immutability_rule(rule_id))


def _rule_fields(item: dict) -> dict[str, Any]:
    return {
        "id": item[keys.SK]["S"],
        "repositories": get_str(item, "repositories") or "",
        "exclude": [value["S"] for value in item.get("exclude", {}).get("L", [])],
        "created_ms": get_int(item, "created_ms"),
    }
