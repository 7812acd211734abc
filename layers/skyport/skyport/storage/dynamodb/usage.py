"""UsageIndex on the table: a repository's partition (REPO#<name>, keys.py) read as usage
counts it, one paged Query, projected to the four attributes it needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import keys
from ..ports import RepositoryItem
from .table import S, Table, get_int

_KINDS = {
    keys.BLOB_PREFIX: "blob",
    keys.MANIFEST_PREFIX: "manifest",
    keys.TAG_PREFIX: "tag",
    keys.PULL_PREFIX: "pull",
}
# Items DynamoDB returns per Query page: pages stay small whatever the manifests weigh
# (the projection drops their bodies from the answer, not from the read's cost).
QUERY_PAGE = 500


class DynamoUsageIndex:
    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def repository_items(self, repository: str) -> Iterator[RepositoryItem]:
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "KeyConditionExpression": "#pk = :pk",
            "ProjectionExpression": "#sk, size_bytes, pushed_ms, last_pulled_ms",
            "ExpressionAttributeNames": {"#pk": keys.PK, "#sk": keys.SK},
            "ExpressionAttributeValues": {":pk": S(keys.repository_partition(repository))},
            "Limit": QUERY_PAGE,
        }
        while True:
            page = self._table.call("query", **kwargs)
            for item in page.get("Items", []):
                sort_key = item[keys.SK]["S"]
                for prefix, kind in _KINDS.items():
                    if sort_key.startswith(prefix):
                        yield RepositoryItem(
                            kind,
                            sort_key[len(prefix) :],
                            get_int(item, "size_bytes"),
                            get_int(item, "last_pulled_ms") if kind == "pull" else get_int(item, "pushed_ms"),
                        )
                        break
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last
