"""ExpiringSessions on the table: what the upload expiry sweep (skyport/upload_expiry.py)
reads and removes of the upload sessions (storage/dynamodb/uploads.py writes them).

A module of its own, not methods of DynamoUploadSessions: the sweep's Scan belongs to the
role of the function that runs it (UploadExpiryFunction), never to the API's
(tests/unit/test_template.py compares each role with the calls its code makes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import keys
from ..ports import UploadSession
from .table import N, S, conditional
from .uploads import DynamoUploadSessions, _session

# An upload session is removed by the sweep only while it is still expired at the sweep's
# cutoff and no request holds a live lease on it. The cutoff is upload_lease_seconds
# before now: a request that claimed the session just before it expired (UPLOAD_IS_FREE
# needs expires_at > its now) keeps its whole lease, so a session a request is using is
# never touched. The lease test restates that, in the condition that deletes.
SESSION_STILL_EXPIRED = (
    "attribute_exists(PK) AND expires_at <= :cutoff"
    " AND (attribute_not_exists(lease_token) OR lease_until < :now)"
)
# The Scan's filter: upload sessions (UPLOAD#<id> / META) past the cutoff.
EXPIRED_SESSION_FILTER = "begins_with(PK, :upload) AND SK = :meta AND expires_at <= :cutoff"
UPLOAD_PARTITION_PREFIX = keys.upload("")[keys.PK]["S"]


class DynamoExpiringSessions(DynamoUploadSessions):
    def expired(self, cutoff: int, page_size: int) -> Iterator[UploadSession]:
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "FilterExpression": EXPIRED_SESSION_FILTER,
            "ExpressionAttributeValues": {
                ":upload": S(UPLOAD_PARTITION_PREFIX),
                ":meta": S(keys.META),
                ":cutoff": N(cutoff),
            },
            "Limit": page_size,
        }
        while True:
            page = self._table.call("scan", **kwargs)
            for item in page.get("Items", []):
                yield _session(item)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def expire(self, session: UploadSession, cutoff: int, now: int) -> UploadSession | None:
        ok, response, _ = conditional(
            lambda: self._table.call(
                "delete_item",
                TableName=self._table.name,
                Key=keys.upload(session.upload_id),
                ConditionExpression=SESSION_STILL_EXPIRED,
                ExpressionAttributeValues={":cutoff": N(cutoff), ":now": N(now)},
                ReturnValues="ALL_OLD",
            )
        )
        if not ok:
            return None
        removed = _session(response["Attributes"])
        self._leave_quota(removed)
        return removed

    def exists(self, upload_id: str) -> bool:
        item = self._table.call(
            "get_item",
            TableName=self._table.name,
            Key=keys.upload(upload_id),
            ProjectionExpression="PK",
            ConsistentRead=True,
        ).get("Item")
        return item is not None
