"""UploadSessions on the table: one item per upload session, written under a lease."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import keys
from ..ports import UploadConflict, UploadMissing, UploadSession
from .table import B, N, S, Table, conditional, get_bytes, get_int, get_str

# An upload id is never reused.
UPLOAD_IS_NEW = "attribute_not_exists(PK)"
# Only one request at a time writes to an upload; a lease left by a crashed
# request expires. The session must belong to the repository in the URL and not be expired.
UPLOAD_IS_FREE = (
    "attribute_exists(PK) AND repo_name = :repo AND expires_at > :now"
    " AND (attribute_not_exists(lease_token) OR lease_until < :now)"
)
# A chunk must start exactly where the upload ends (distribution-spec: chunks in order).
UPLOAD_AT_OFFSET = "received_bytes = :expected"
# The writer still holds the lease it took.
LEASE_HELD = "lease_token = :token"
# A session is removed only through the repository it belongs to.
UPLOAD_IN_REPO = "attribute_exists(PK) AND repo_name = :repo"
# With auth on, an upload session is used only by the identity that started it.
UPLOAD_OWNED_BY = "owner_name = :owner"


def _pack_etags(etags: Sequence[str]) -> bytes:
    # Part ETags are quoted MD5 hex; 16 bytes each keeps 10,000 parts far
    # under the 400 KB item limit.
    return b"".join(bytes.fromhex(etag.strip('"')) for etag in etags)


def _unpack_etags(packed: bytes | None) -> list[str]:
    packed = packed or b""
    return [f'"{packed[i:i + 16].hex()}"' for i in range(0, len(packed), 16)]


def _session_item(session: UploadSession) -> dict:
    item = {
        **keys.upload(session.upload_id),
        "repo_name": S(session.repository),
        "blob_key": S(session.blob_key),
        "received_bytes": N(session.offset),
        "hash_algorithm": S(session.hash_algorithm),
        "hash_state": B(session.hash_state),
        "part_etags": B(_pack_etags(session.part_etags)),
        "tail_size": N(session.tail_size),
        keys.TTL_ATTRIBUTE: N(session.expires_at),
    }
    if session.multipart_id:
        item["multipart_id"] = S(session.multipart_id)
    if session.tail_key:
        item["tail_key"] = S(session.tail_key)
    if session.owner is not None:
        item["owner_name"] = S(session.owner)
    return item


def _session(item: dict) -> UploadSession:
    return UploadSession(
        upload_id=item[keys.PK]["S"].split("#", 1)[1],
        repository=get_str(item, "repo_name") or "",
        blob_key=get_str(item, "blob_key") or "",
        offset=get_int(item, "received_bytes"),
        hash_algorithm=get_str(item, "hash_algorithm") or "sha256",
        hash_state=get_bytes(item, "hash_state") or b"",
        multipart_id=get_str(item, "multipart_id"),
        part_etags=_unpack_etags(get_bytes(item, "part_etags")),
        tail_key=get_str(item, "tail_key"),
        tail_size=get_int(item, "tail_size"),
        expires_at=get_int(item, keys.TTL_ATTRIBUTE),
        owner=get_str(item, "owner_name"),
    )


class DynamoUploadSessions:
    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def create(self, session: UploadSession) -> None:
        self._table.put(_session_item(session), UPLOAD_IS_NEW)

    def get(self, upload_id: str) -> UploadSession | None:
        item = self._table.get(keys.upload(upload_id))
        return _session(item) if item else None

    def claim(self, upload_id: str, repository: str, token: str, now: int, lease_until: int,
              expected_offset: int | None, owner: str | None = None) -> UploadSession:
        condition = UPLOAD_IS_FREE
        values = {":repo": S(repository), ":now": N(now), ":token": S(token), ":until": N(lease_until)}
        if owner is not None:
            condition = f"{condition} AND {UPLOAD_OWNED_BY}"
            values[":owner"] = S(owner)
        if expected_offset is not None:
            condition = f"{condition} AND {UPLOAD_AT_OFFSET}"
            values[":expected"] = N(expected_offset)
        ok, response, old = conditional(lambda: self._table.call(
            "update_item", TableName=self._table.name, Key=keys.upload(upload_id),
            UpdateExpression="SET lease_token = :token, lease_until = :until",
            ConditionExpression=condition, ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD"))
        if ok:
            return _session(response["Attributes"])
        if (not old or get_str(old, "repo_name") != repository or get_int(old, keys.TTL_ATTRIBUTE) <= now
                or (owner is not None and get_str(old, "owner_name") != owner)):
            raise UploadMissing(upload_id)
        busy = "lease_token" in old and get_int(old, "lease_until") >= now
        raise UploadConflict(_session(old), busy=busy)

    def save(self, session: UploadSession, token: str) -> None:
        ok, _, _ = conditional(lambda: self._table.put(
            _session_item(session), LEASE_HELD, {":token": S(token)}))
        if not ok:
            raise UploadConflict(None)

    def release(self, upload_id: str, token: str) -> None:
        conditional(lambda: self._table.call(
            "update_item", TableName=self._table.name, Key=keys.upload(upload_id),
            UpdateExpression="REMOVE lease_token, lease_until", ConditionExpression=LEASE_HELD,
            ExpressionAttributeValues={":token": S(token)}))

    def delete(self, upload_id: str, repository: str, token: str | None = None,
               owner: str | None = None) -> UploadSession:
        condition, values = UPLOAD_IN_REPO, {":repo": S(repository)}
        if owner is not None:
            condition, values = f"{condition} AND {UPLOAD_OWNED_BY}", {**values, ":owner": S(owner)}
        if token is not None:
            condition, values = f"{condition} AND {LEASE_HELD}", {**values, ":token": S(token)}
        ok, response, _ = conditional(lambda: self._table.call(
            "delete_item", TableName=self._table.name, Key=keys.upload(upload_id),
            ConditionExpression=condition, ExpressionAttributeValues=values, ReturnValues="ALL_OLD"))
        if not ok:
            raise UploadMissing(upload_id)
        return _session(response["Attributes"])


