"""Webhook subscriptions and delivery records on the table (keys: ``storage/keys.py``,
"Webhooks"). The signing secrets are not here: Secrets Manager (skyport/webhooks.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import keys
from .table import N, S, Table, conditional, get_int, get_str

# A webhook id is made once per `webhook add` (random): never overwrite another's.
WEBHOOK_IS_NEW = "attribute_not_exists(PK)"


class DynamoWebhookStore:
    """What skyport.webhooks.WebhookStore asks, on the table. Records are plain dicts of the
    subscription's fields (webhooks.Webhook builds itself from them)."""

    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def _partition(self, pk: str, projection: str | None = None) -> Iterator[dict]:
        """Every item of partition ``pk``, page by page (no sort key condition: DynamoDB
        refuses an empty begins_with prefix)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": S(pk)},
        }
        if projection:
            kwargs["ProjectionExpression"] = projection
        while True:
            page = self._table.call("query", **kwargs)
            yield from page.get("Items", [])
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- subscriptions ----------------------------------------------------------------

    def create_webhook(self, fields: dict[str, Any]) -> bool:
        item = {
            **keys.webhook(fields["id"]),
            "url": S(fields["url"]),
            "event_types": {"L": [S(kind) for kind in fields["event_types"]]},
            "repositories": S(fields["repositories"]),
            "insecure": {"BOOL": bool(fields["insecure"])},
            "created_at": N(fields["created_at"]),
        }
        ok, _, _ = conditional(lambda: self._table.put(item, WEBHOOK_IS_NEW))
        return ok

    def list_webhooks(self) -> list[dict[str, Any]]:
        return [_webhook_fields(item) for item in self._partition(keys.WEBHOOK)]

    def get_webhook(self, webhook_id: str) -> dict[str, Any] | None:
        item = self._table.get(keys.webhook(webhook_id))
        return _webhook_fields(item) if item else None

    def delete_webhook(self, webhook_id: str) -> bool:
        return self._table.delete_existing(keys.webhook(webhook_id))

    # --- delivery records ---------------------------------------------------------------

    def delivered_to(self, event_id: str) -> set[str]:
        """The ids of the webhooks that acknowledged ``event_id`` (one Query)."""
        partition = keys.webhook_deliveries_partition(event_id)
        return {item[keys.SK]["S"] for item in self._partition(partition, projection="SK")}

    def record_delivery(self, event_id: str, webhook_id: str, status: int, now: int, expires_at: int) -> None:
        """A plain put: recording the same delivery twice changes nothing that matters
        (no invariant rides on it, so no condition)."""
        self._table.put(
            {
                **keys.webhook_delivery(event_id, webhook_id),
                "status": N(status),
                "delivered_at": N(now),
                keys.TTL_ATTRIBUTE: N(expires_at),
            }
        )


def _webhook_fields(item: dict) -> dict[str, Any]:
    return {
        "id": item[keys.SK]["S"],
        "url": get_str(item, "url") or "",
        "event_types": tuple(value["S"] for value in item.get("event_types", {}).get("L", [])),
        "repositories": get_str(item, "repositories") or "*",
        "insecure": bool(item.get("insecure", {}).get("BOOL", False)),
        "created_at": get_int(item, "created_at"),
    }
