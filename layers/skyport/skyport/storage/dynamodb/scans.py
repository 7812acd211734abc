"""Scan records on the table (keys: ``storage/keys.py``, REPO#<name> / SCAN#<digest>; what
they mean and who writes them: skyport/scanning/service.py).

Every change is a conditional write whose condition has a name. A scan starts by taking
the record's lease (``begin``); only the lease's holder may finish it (``complete`` or
``fail``): of a hundred deliveries of one manifest.pushed event, one scans."""

from __future__ import annotations

from typing import Any

from .. import keys
from .table import N, S, Table, conditional, get_int, get_str

SCANNING, COMPLETE, FAILED = "scanning", "complete", "failed"

# A scan on push starts only where none ran to its end: no record, a failed one, or one
# whose scanner died (its lease ran out). An image already scanned is not scanned again.
SCAN_NOT_DONE_NOR_RUNNING = (
    "attribute_not_exists(PK) OR scan_status = :failed OR (scan_status = :scanning AND lease_until < :now)"
)
# A forced scan (`skyport scan`, the daily re-scan) starts unless another is running.
SCAN_NOT_RUNNING = "attribute_not_exists(PK) OR scan_status <> :scanning OR lease_until < :now"
# Only the scan that took the lease writes its outcome; one whose lease was taken over (it
# ran past lease_until) or whose record went with its manifest writes nothing.
SCAN_LEASE_HELD = "scan_status = :scanning AND lease_owner = :owner"

# Newly found ids kept on the record (and so in the scan.completed event): enough for a
# person to act on; the report has them all. Bounds the item and the event's size.
MAX_NEW_FINDINGS = 100
# An error is a sentence for a person; bounded like every stored message.
MAX_ERROR_CHARACTERS = 1000


def _counts(item: dict) -> dict[str, int]:
    value = item.get("counts", {}).get("M") or {}
    return {name: int(number.get("N", "0")) for name, number in value.items()}


def record_from_item(item: dict) -> dict[str, Any]:
    """The record's fields as plain values (the service builds its ScanRecord from them)."""
    return {
        "status": get_str(item, "scan_status") or "",
        "lease_owner": get_str(item, "lease_owner"),
        "lease_until_ms": get_int(item, "lease_until") if "lease_until" in item else 0,
        "sbom_digest": get_str(item, "sbom_digest"),
        "report_digest": get_str(item, "report_digest"),
        "counts": _counts(item),
        "scanned_at": get_str(item, "scanned_at") or "",
        "database": get_str(item, "database_version") or "",
        "new_findings": tuple(entry.get("S", "") for entry in item.get("new_findings", {}).get("L", [])),
        "error": get_str(item, "error") or "",
    }


class DynamoScanStore:
    """What skyport.scanning.service.ScanStore asks, on the table."""

    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def get(self, repository: str, digest: str) -> dict[str, Any] | None:
        item = self._table.call(
            "get_item",
            TableName=self._table.name,
            Key=keys.scan_record(repository, digest),
            ConsistentRead=True,
        ).get("Item")
        return record_from_item(item) if item else None

    def begin(
        self, repository: str, digest: str, owner: str, now_ms: int, lease_ms: int, force: bool
    ) -> tuple[bool, dict[str, Any] | None]:
        """Take the lease: (True, the record as it was before, or None) or (False, the
        record that refused it)."""
        ok, response, old = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.scan_record(repository, digest),
                UpdateExpression="SET scan_status = :scanning, lease_owner = :owner, lease_until = :until"
                " REMOVE #error",
                ConditionExpression=SCAN_NOT_RUNNING if force else SCAN_NOT_DONE_NOR_RUNNING,
                ExpressionAttributeNames={"#error": "error"},
                ExpressionAttributeValues={
                    ":scanning": S(SCANNING),
                    ":owner": S(owner),
                    ":until": N(now_ms + lease_ms),
                    ":now": N(now_ms),
                    **({} if force else {":failed": S(FAILED)}),
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        )
        if ok:
            previous = (response or {}).get("Attributes")
            return True, record_from_item(previous) if previous else None
        return False, record_from_item(old) if old else None

    def complete(
        self,
        repository: str,
        digest: str,
        owner: str,
        *,
        sbom_digest: str,
        report_digest: str,
        counts: dict[str, int],
        scanned_at: str,
        database: str,
        new_findings: tuple[str, ...] | None,
    ) -> bool:
        """The scan's outcome, if this owner still holds the lease (SCAN_LEASE_HELD).
        ``new_findings`` None: a first scan (the record keeps none)."""
        values: dict[str, Any] = {
            ":complete": S(COMPLETE),
            ":sbom": S(sbom_digest),
            ":report": S(report_digest),
            ":counts": {"M": {name: N(number) for name, number in counts.items()}},
            ":scanned_at": S(scanned_at),
            ":database": S(database),
            ":scanning": S(SCANNING),
            ":owner": S(owner),
        }
        update = (
            "SET scan_status = :complete, sbom_digest = :sbom, report_digest = :report,"
            " counts = :counts, scanned_at = :scanned_at, database_version = :database"
        )
        remove = ["lease_owner", "lease_until", "#error"]
        if new_findings is not None:
            update += ", new_findings = :new, rescan = :rescan"
            values[":new"] = {"L": [S(finding) for finding in new_findings[:MAX_NEW_FINDINGS]]}
            values[":rescan"] = {"BOOL": True}
        else:
            remove += ["new_findings", "rescan"]
        return self._finish(repository, digest, f"{update} REMOVE {', '.join(remove)}", values)

    def fail(self, repository: str, digest: str, owner: str, error: str) -> bool:
        """The scan failed, with the reason for a person (no secrets: the service says
        what failed, never a credential), if this owner still holds the lease."""
        return self._finish(
            repository,
            digest,
            "SET scan_status = :failed, #error = :error REMOVE lease_owner, lease_until",
            {
                ":failed": S(FAILED),
                ":error": S(error[:MAX_ERROR_CHARACTERS] or "the scan failed"),
                ":scanning": S(SCANNING),
                ":owner": S(owner),
            },
        )

    def _finish(self, repository: str, digest: str, update: str, values: dict[str, Any]) -> bool:
        names = {"#error": "error"} if "#error" in update else {}
        ok, _, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.scan_record(repository, digest),
                UpdateExpression=update,
                ConditionExpression=SCAN_LEASE_HELD,
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        )
        return ok

    def forget(self, repository: str, digest: str) -> None:
        self._table.call("delete_item", TableName=self._table.name, Key=keys.scan_record(repository, digest))
