"""Last-pull records on the table (keys: ``storage/keys.py``, REPO#<name> / PULL#<digest>;
their meaning and how rarely they are written: skyport/pulls.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import keys
from .table import N, Table, conditional, get_int

# The record moves forward only, and only once the time it holds is older than the
# interval: of many processes noting the same pull in one interval, one writes.
PULL_RECORD_IS_STALE = "attribute_not_exists(last_pulled_ms) OR last_pulled_ms < :stale_before"


class DynamoPullStore:
    """What skyport.pulls.PullStore asks, on the table."""

    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def record_pull(self, repository: str, digest: str, pulled_ms: int, stale_before_ms: int) -> bool:
        ok, _, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.manifest_pull(repository, digest),
                UpdateExpression="SET last_pulled_ms = :pulled",
                ConditionExpression=PULL_RECORD_IS_STALE,
                ExpressionAttributeValues={":pulled": N(pulled_ms), ":stale_before": N(stale_before_ms)},
            )
        )
        return ok

    def last_pulls(self, repository: str) -> Iterator[tuple[str, int]]:
        for item in self._table.query(
            keys.repository_partition(repository), keys.PULL_PREFIX, projection="SK, last_pulled_ms"
        ):
            yield item[keys.SK]["S"][len(keys.PULL_PREFIX) :], get_int(item, "last_pulled_ms")

    def forget_pull(self, repository: str, digest: str) -> None:
        key = keys.manifest_pull(repository, digest)
        self._table.call("delete_item", TableName=self._table.name, Key=key)
