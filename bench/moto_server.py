"""The bench's moto server: ``python -m moto.server`` with one cost of moto's removed.

moto (5.x) makes TransactWriteItems roll back by deep-copying the whole table,
once per item in the transaction, stream records included (Skyport's table has a
stream, and moto never trims it). A transaction's cost then grows with every write
the table ever took: after a few thousand writes one manifest push costs seconds,
while real DynamoDB answers in milliseconds whatever the table holds. Distribution
does not use DynamoDB, so left alone this would tilt the comparison by an artefact
of the emulator.

Here the snapshot is taken of the items the transaction names, not of the table,
and restored the same way when the transaction is cancelled: the same semantics,
at a cost independent of the table's size. Everything else is moto unchanged.

    python -m bench.moto_server -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import copy
import logging
import sys
import types
from typing import Any

log = logging.getLogger("bench.moto")


def patch_transactions() -> bool:
    """Install the item-level snapshot; False (and moto unchanged) if moto's shape differs."""
    try:
        from moto.dynamodb import models
        from moto.dynamodb.models.dynamo_type import DynamoType
        from moto.dynamodb.models.table import Table

        backend_class = models.DynamoDBBackend
        original = backend_class.transact_write_items
        assert isinstance(getattr(models, "copy", None), types.ModuleType)
    except (ImportError, AttributeError, AssertionError):
        return False

    # Inside moto.dynamodb.models, deepcopy of a Table becomes the identity: the
    # whole-table snapshot in transact_write_items is then free, and its "restore"
    # (putting the same object back) a no-op. Item copies stay real copies.
    def deepcopy(value: Any, memo: dict | None = None) -> Any:
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)

    models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)

    def key_of(table: Any, op_type: str, op: dict) -> tuple[DynamoType, DynamoType | None]:
        attrs = op["Item"] if op_type == "Put" else op["Key"]
        hash_value = DynamoType(attrs[table.hash_key_attr])
        range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr is not None else None
        return hash_value, range_value

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = self.tables[op["TableName"]]
                hash_value, range_value = key_of(table, op_type, op)
            except (KeyError, StopIteration, TypeError, AttributeError):
                continue  # malformed: moto's own validation answers it
            current = table.get_item(hash_value, range_value)
            saved.append((table, hash_value, range_value, copy.deepcopy(current)))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(saved):
                if range_value is not None:
                    if item is None:
                        table.items.get(hash_value, {}).pop(range_value, None)
                    else:
                        table.items[hash_value][range_value] = item
                elif item is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = item
            raise

    backend_class.transact_write_items = transact_write_items
    return True


def main() -> None:
    from moto.server import main as moto_main

    patched = patch_transactions()
    print(f"bench moto: item-level transaction snapshots {'on' if patched else 'UNAVAILABLE'}", flush=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
