"""BlobIndex on the table: one item per blob, one per (repository, blob) link.

Every write that makes a blob live stamps ``used_ms`` (epoch ms) on what it writes: the
link on each link write, the blob's META when it is created, when an upload of a digest
already known completes, and when a mount links it. The garbage collector (skyport/gc)
removes only what is unreferenced and unused since its cutoff; the stamps are what makes
a concurrent push visible to its conditional deletes (the argument: skyport/gc/__init__.py).
"""

from __future__ import annotations

import time
from typing import Any

from .. import keys
from ..ports import BlobRecord
from .table import ITEM_EXISTS, N, S, Table, conditional, get_int, get_str

# A blob is recorded once; later uploads of the same digest reuse that record.
BLOB_IS_NEW = "attribute_not_exists(PK)"
# How many times add_blob goes round "recorded already → touch it → gone meanwhile (GC
# removed it) → record ours": each round needs a GC sweep to land in between.
_ADD_ATTEMPTS = 5


def now_ms() -> int:
    return int(time.time() * 1000)


def _blob_item(key: dict, record: BlobRecord, used_ms: int) -> dict:
    return {
        **key,
        "digest": S(record.digest),
        "size_bytes": N(record.size),
        "s3_key": S(record.key),
        "used_ms": N(used_ms),
    }


def _blob_record(item: dict) -> BlobRecord:
    return BlobRecord(
        digest=get_str(item, "digest") or "",
        size=get_int(item, "size_bytes"),
        key=get_str(item, "s3_key") or "",
    )


class DynamoBlobIndex:
    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def get_link(self, repository: str, digest: str) -> BlobRecord | None:
        item = self._table.get(keys.blob_link(repository, digest))
        return _blob_record(item) if item else None

    def get_blob(self, digest: str) -> BlobRecord | None:
        item = self._table.get(keys.blob(digest))
        return _blob_record(item) if item else None

    def add_blob(self, record: BlobRecord) -> BlobRecord:
        for _ in range(_ADD_ATTEMPTS):
            ok, _, _ = conditional(
                lambda: self._table.put(_blob_item(keys.blob(record.digest), record, now_ms()), BLOB_IS_NEW)
            )
            if ok:
                return record
            # Recorded already: that record is used again now, so the collector keeps it
            # (its delete is conditional on used_ms). Gone meanwhile: ours is recorded instead.
            stored = self.touch_blob(record.digest)
            if stored is not None:
                return stored
        return self.get_blob(record.digest) or record

    def touch_blob(self, digest: str) -> BlobRecord | None:
        """Stamp the blob's META as used now, if it exists (ITEM_EXISTS); its record, or
        None when there is no blob (never recorded, or removed by the collector)."""
        ok, result, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.blob(digest),
                UpdateExpression="SET used_ms = :now",
                ConditionExpression=ITEM_EXISTS,
                ExpressionAttributeValues={":now": N(now_ms())},
                ReturnValues="ALL_NEW",
            )
        )
        return _blob_record(result["Attributes"]) if ok and result else None

    def link(self, repository: str, record: BlobRecord) -> None:
        self._table.put(_blob_item(keys.blob_link(repository, record.digest), record, now_ms()))

    def unlink(self, repository: str, digest: str) -> bool:
        return self._table.delete_existing(keys.blob_link(repository, digest))
