"""BlobIndex on the table: one item per blob, one per (repository, blob) link."""

from __future__ import annotations

from typing import Any

from .. import keys
from ..ports import BlobRecord
from .table import N, S, Table, conditional, get_int, get_str

# A blob is recorded once; later uploads of the same digest reuse that record.
BLOB_IS_NEW = "attribute_not_exists(PK)"


def _blob_item(key: dict, record: BlobRecord) -> dict:
    return {**key, "digest": S(record.digest), "size_bytes": N(record.size), "s3_key": S(record.key)}


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
        ok, _, old = conditional(
            lambda: self._table.put(
                _blob_item(keys.blob(record.digest), record), BLOB_IS_NEW, return_old_on_failure=True
            )
        )
        if ok:
            return record
        return _blob_record(old) if old else (self.get_blob(record.digest) or record)

    def link(self, repository: str, record: BlobRecord) -> None:
        self._table.put(_blob_item(keys.blob_link(repository, record.digest), record))

    def unlink(self, repository: str, digest: str) -> bool:
        return self._table.delete_existing(keys.blob_link(repository, digest))
