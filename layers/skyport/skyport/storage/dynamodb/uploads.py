"""UploadSessions on the table: one item per upload session, written under a lease."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from .. import keys
from ..ports import StorageUnavailable, TooManyUploads, UploadConflict, UploadMissing, UploadSession
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
# A quota takes a new session only below its cap. Its item maps the id of every
# session open in it to the session's expires_at; entries of expired sessions are
# dropped (QUOTA_EXISTS) when they stand in the way, so sessions that expire by TTL
# instead of being finished or cancelled do not hold their place for ever.
QUOTA_BELOW_CAP = "attribute_exists(open_uploads) AND size(open_uploads) < :cap"
QUOTA_IS_NEW = "attribute_not_exists(PK)"
QUOTA_EXISTS = "attribute_exists(open_uploads)"
# A direct upload (skyport.direct_uploads) moves from state to state only from the one
# it is known to be in, and only through its repository, by its owner.
DIRECT_IN_STATE = "attribute_exists(PK) AND repo_name = :repo AND direct_state = :from AND expires_at > :now"
# The lease a direct upload holds for its whole life: the chunked-upload routes find the
# session busy (UPLOAD_IS_FREE fails) and never write to it; the direct-upload service
# deletes it under this token (LEASE_HELD).
DIRECT_LEASE = "direct-upload"
# A full quota is read, pruned of expired sessions and tried again this many times.
QUOTA_ATTEMPTS = 4
# Entries one pruning update removes (an update expression holds at most 4 KB).
QUOTA_PRUNE_BATCH = 100


def _pack_etags(etags: Sequence[str]) -> bytes:
    # Part ETags are quoted MD5 hex; 16 bytes each keeps 10,000 parts far
    # under the 400 KB item limit.
    return b"".join(bytes.fromhex(etag.strip('"')) for etag in etags)


def _unpack_etags(packed: bytes | None) -> list[str]:
    packed = packed or b""
    return [f'"{packed[i : i + 16].hex()}"' for i in range(0, len(packed), 16)]


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
    if session.quota is not None:
        item["quota"] = S(session.quota)
    if session.direct_state is not None:
        item["direct_state"] = S(session.direct_state)
        item["direct_digest"] = S(session.direct_digest or "")
        item["direct_size"] = N(session.direct_size)
        item["lease_token"] = S(DIRECT_LEASE)
        item["lease_until"] = N(session.expires_at)
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
        quota=get_str(item, "quota"),
        direct_digest=get_str(item, "direct_digest"),
        direct_size=get_int(item, "direct_size"),
        direct_state=get_str(item, "direct_state"),
    )


def _is_own_write(old: dict | None, session: UploadSession) -> bool:
    """Whether the item that failed UPLOAD_IS_NEW is the one ``session`` wrote: the id
    is a fresh uuid4, so only a retry of our own write whose answer was lost finds it."""
    return (
        bool(old)
        and get_str(old, "repo_name") == session.repository
        and get_int(old, keys.TTL_ATTRIBUTE) == session.expires_at
    )


class DynamoUploadSessions:
    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def create(self, session: UploadSession, max_open: int = 0, now: int = 0) -> None:
        if session.quota is None or not max_open:
            ok, _, old = conditional(
                lambda: self._table.put(_session_item(session), UPLOAD_IS_NEW, return_old_on_failure=True)
            )
            if not ok and not _is_own_write(old, session):
                raise StorageUnavailable("upload id taken")  # a uuid4 clash: retryable
            return
        name, quota_key = self._table.name, keys.open_uploads(session.quota)
        # The session and its place in the quota, together or not at all.
        actions = [
            {
                "Put": {
                    "TableName": name,
                    "Item": _session_item(session),
                    "ConditionExpression": UPLOAD_IS_NEW,
                }
            },
            {
                "Update": {
                    "TableName": name,
                    "Key": quota_key,
                    "UpdateExpression": f"SET open_uploads.#id = :expires, {keys.TTL_ATTRIBUTE} = :expires",
                    "ConditionExpression": QUOTA_BELOW_CAP,
                    "ExpressionAttributeNames": {"#id": session.upload_id},
                    "ExpressionAttributeValues": {":expires": N(session.expires_at), ":cap": N(max_open)},
                }
            },
        ]
        for _ in range(QUOTA_ATTEMPTS):
            try:
                self._table.transact(actions)
                return
            except ClientError as error:
                reasons = getattr(error, "reasons", [])
                if len(reasons) == 2 and reasons[0] == "ConditionalCheckFailed":
                    # The session item is there already: ours if an earlier attempt of this
                    # loop took effect but its answer was lost; anything else is a uuid4
                    # clash, which a retry of the whole request resolves.
                    if self._is_own_session(session):
                        return
                    raise StorageUnavailable("upload id taken") from error
                if len(reasons) != 2 or reasons[1] != "ConditionalCheckFailed":
                    raise
            if not self._make_room(quota_key, max_open, now, session.expires_at):
                raise TooManyUploads(max_open)
        raise StorageUnavailable("upload quota: changed under every attempt")

    def _is_own_session(self, session: UploadSession) -> bool:
        item = self._table.call(
            "get_item", TableName=self._table.name, Key=keys.upload(session.upload_id), ConsistentRead=True
        ).get("Item")
        return _is_own_write(item, session)

    def _make_room(self, quota_key: dict, max_open: int, now: int, expires_at: int) -> bool:
        """After the quota refused a session: True if it may take one now (it was absent
        and is created, it changed meanwhile, or expired sessions were dropped from it);
        False when it holds ``max_open`` open sessions."""
        item = self._table.call(
            "get_item", TableName=self._table.name, Key=quota_key, ConsistentRead=True
        ).get("Item")
        if item is None or "open_uploads" not in item:
            conditional(
                lambda: self._table.put(
                    {**quota_key, "open_uploads": {"M": {}}, keys.TTL_ATTRIBUTE: N(expires_at)}, QUOTA_IS_NEW
                )
            )
            return True
        entries = item["open_uploads"]["M"]
        expired = [upload_id for upload_id, value in entries.items() if int(value["N"]) <= now]
        if not expired:
            return len(entries) < max_open
        names = {f"#e{i}": upload_id for i, upload_id in enumerate(expired[:QUOTA_PRUNE_BATCH])}
        conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=quota_key,
                UpdateExpression="REMOVE " + ", ".join(f"open_uploads.{n}" for n in names),
                ConditionExpression=QUOTA_EXISTS,
                ExpressionAttributeNames=names,
            )
        )
        return True

    def _leave_quota(self, session: UploadSession) -> None:
        """Best effort: the session is gone already, and an entry left behind stops
        counting when the session would have expired (QUOTA_BELOW_CAP's pruning)."""
        if session.quota is None:
            return
        try:
            conditional(
                lambda: self._table.call(
                    "update_item",
                    TableName=self._table.name,
                    Key=keys.open_uploads(session.quota),
                    UpdateExpression="REMOVE open_uploads.#id",
                    ConditionExpression=QUOTA_EXISTS,
                    ExpressionAttributeNames={"#id": session.upload_id},
                )
            )
        except StorageUnavailable:
            pass

    def get(self, upload_id: str) -> UploadSession | None:
        item = self._table.get(keys.upload(upload_id))
        return _session(item) if item else None

    def claim(
        self,
        upload_id: str,
        repository: str,
        token: str,
        now: int,
        lease_until: int,
        expected_offset: int | None,
        owner: str | None = None,
    ) -> UploadSession:
        condition = UPLOAD_IS_FREE
        values = {":repo": S(repository), ":now": N(now), ":token": S(token), ":until": N(lease_until)}
        if owner is not None:
            condition = f"{condition} AND {UPLOAD_OWNED_BY}"
            values[":owner"] = S(owner)
        if expected_offset is not None:
            condition = f"{condition} AND {UPLOAD_AT_OFFSET}"
            values[":expected"] = N(expected_offset)
        ok, response, old = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.upload(upload_id),
                UpdateExpression="SET lease_token = :token, lease_until = :until",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        )
        if ok:
            return _session(response["Attributes"])
        if old and get_str(old, "lease_token") == token:
            # Our own lease: the SDK retried a write whose answer was lost, and the
            # retry failed the condition the first attempt had met.
            return _session(old)
        if (
            not old
            or get_str(old, "repo_name") != repository
            or get_int(old, keys.TTL_ATTRIBUTE) <= now
            or (owner is not None and get_str(old, "owner_name") != owner)
        ):
            raise UploadMissing(upload_id)
        busy = "lease_token" in old and get_int(old, "lease_until") >= now
        raise UploadConflict(_session(old), busy=busy)

    def save(self, session: UploadSession, token: str) -> None:
        ok, _, _ = conditional(
            lambda: self._table.put(_session_item(session), LEASE_HELD, {":token": S(token)})
        )
        if not ok:
            raise UploadConflict(None)

    def release(self, upload_id: str, token: str) -> None:
        conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.upload(upload_id),
                UpdateExpression="REMOVE lease_token, lease_until",
                ConditionExpression=LEASE_HELD,
                ExpressionAttributeValues={":token": S(token)},
            )
        )

    def delete(
        self, upload_id: str, repository: str, token: str | None = None, owner: str | None = None
    ) -> UploadSession:
        condition, values = UPLOAD_IN_REPO, {":repo": S(repository)}
        if owner is not None:
            condition, values = f"{condition} AND {UPLOAD_OWNED_BY}", {**values, ":owner": S(owner)}
        if token is not None:
            condition, values = f"{condition} AND {LEASE_HELD}", {**values, ":token": S(token)}
        ok, response, _ = conditional(
            lambda: self._table.call(
                "delete_item",
                TableName=self._table.name,
                Key=keys.upload(upload_id),
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        )
        if not ok:
            raise UploadMissing(upload_id)
        session = _session(response["Attributes"])
        self._leave_quota(session)
        return session

    # --- direct uploads -------------------------------------------------------------------

    def move_direct(
        self, upload_id: str, repository: str, from_state: str, to_state: str, now: int, owner: str | None
    ) -> bool:
        """Move a direct upload from ``from_state`` to ``to_state`` (DIRECT_IN_STATE, and
        UPLOAD_OWNED_BY with an owner). False when it is not in ``from_state`` (or gone)."""
        condition = DIRECT_IN_STATE
        values = {":repo": S(repository), ":from": S(from_state), ":to": S(to_state), ":now": N(now)}
        if owner is not None:
            condition, values = f"{condition} AND {UPLOAD_OWNED_BY}", {**values, ":owner": S(owner)}
        ok, _, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.upload(upload_id),
                UpdateExpression="SET direct_state = :to",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        )
        return ok
