"""BlobIndex, UploadSessions and ManifestIndex on one DynamoDB table (layout: keys.py).

Invariants are conditional writes; each condition has a name below, and no
other condition is written anywhere.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from . import keys
from .ports import (
    BlobRecord,
    IdentityRecord,
    ManifestRecord,
    MissingReferences,
    Page,
    Referrer,
    StorageUnavailable,
    UploadConflict,
    UploadMissing,
    UploadSession,
)

# --- named conditions ---------------------------------------------------------
# A blob is recorded once; later uploads of the same digest reuse that record.
BLOB_IS_NEW = "attribute_not_exists(PK)"
# A link (or manifest, tag, session) exists before it is used or removed.
ITEM_EXISTS = "attribute_exists(PK)"
# A manifest may only reference a blob linked into its repository, at the size it claims.
LINK_EXISTS_WITH_SIZE = "attribute_exists(PK) AND size_bytes = :size"
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
# A tag is removed with its manifest only while it still points at it.
TAG_POINTS_AT = "digest = :digest"
UPLOAD_IN_REPO = "attribute_exists(PK) AND repo_name = :repo"
# With auth on, an upload session is used only by the identity that started it.
UPLOAD_OWNED_BY = "owner_name = :owner"
# Identities and grants: created once, changed or removed only while they exist.
IDENTITY_IS_NEW = "attribute_not_exists(PK)"
# The first admin is bootstrapped once in the registry's life.
BOOTSTRAP_NOT_DONE = "attribute_not_exists(PK)"
# Signing keys are replaced only by a writer that saw the current one (no lost rotation).
KEYS_ARE_NEW = "attribute_not_exists(PK)"
KEYS_UNCHANGED = "current_key = :replacing"

# DynamoDB transactions hold at most 100 actions.
MAX_TRANSACTION_ITEMS = 100
# Annotations ride in the manifest, tag and referrer items so the referrers API
# answers from one query. A 4 MiB manifest may carry more than a 400 KB item
# holds: past this size they are flagged and read from the manifest body.
ANNOTATIONS_ITEM_LIMIT = 64 * 1024
_THROTTLED = {
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "TransactionInProgressException",
}

T = TypeVar("T")


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _b(value: bytes) -> dict[str, bytes]:
    return {"B": value}


def _str(item: dict, name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value else None


def _int(item: dict, name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0


def _bytes(item: dict, name: str) -> bytes | None:
    value = item.get(name)
    return bytes(value["B"]) if value else None


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


class _Table:
    """The low-level client bound to one table, with errors translated."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            if _error_code(error) in _THROTTLED:
                raise StorageUnavailable(f"DynamoDB {operation}: {_error_code(error)}") from error
            raise
        except BotoCoreError as error:
            raise StorageUnavailable(f"DynamoDB {operation}: {error}") from error

    def get(self, key: dict, projection: str | None = None) -> dict | None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Key": key}
        if projection:
            kwargs["ProjectionExpression"] = projection
        return self.call("get_item", **kwargs).get("Item")

    def put(self, item: dict, condition: str | None = None, values: dict | None = None,
            return_old_on_failure: bool = False) -> None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": item}
        if condition:
            kwargs["ConditionExpression"] = condition
        if values:
            kwargs["ExpressionAttributeValues"] = values
        if return_old_on_failure:
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.call("put_item", **kwargs)

    def query(self, pk: str, sk_prefix: str, limit: int | None = None, after: str | None = None,
              projection: str | None = None, filter_expression: str | None = None,
              values: dict | None = None) -> Iterator[dict]:
        """Items of partition ``pk`` whose SK starts with ``sk_prefix``, in SK order,
        starting after SK ``after``; stops after ``limit`` items when given."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": _s(pk), ":prefix": _s(sk_prefix), **(values or {})},
        }
        if projection:
            kwargs["ProjectionExpression"] = projection
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        if after is not None:
            kwargs["ExclusiveStartKey"] = {keys.PK: _s(pk), keys.SK: _s(after)}
        returned = 0
        while True:
            if limit is not None and not filter_expression:
                kwargs["Limit"] = limit - returned
            page = self.call("query", **kwargs)
            for item in page.get("Items", []):
                yield item
                returned += 1
                if limit is not None and returned >= limit:
                    return
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def transact(self, actions: list[dict], attempts: int = 6) -> None:
        """TransactWriteItems, retrying conflicts with other transactions (which
        DynamoDB reports for concurrent pushes touching the same items)."""
        for attempt in range(attempts):
            try:
                self.call("transact_write_items", TransactItems=actions)
                return
            except ClientError as error:
                if _error_code(error) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons or attempt == attempts - 1:
                    error.reasons = reasons  # type: ignore[attr-defined]
                    if "ConditionalCheckFailed" not in reasons:
                        raise StorageUnavailable(f"DynamoDB transaction: {reasons}") from error
                    raise
                time.sleep(random.uniform(0, 0.02 * 2**attempt))


def _conditional(fn: Callable[[], T]) -> tuple[bool, T | None, dict | None]:
    """Run a conditional write: (True, result, None) or (False, None, old item)."""
    try:
        return True, fn(), None
    except ClientError as error:
        if _error_code(error) != "ConditionalCheckFailedException":
            raise
        return False, None, error.response.get("Item")


# --- blobs -------------------------------------------------------------------

def _blob_item(key: dict, record: BlobRecord) -> dict:
    return {**key, "digest": _s(record.digest), "size_bytes": _n(record.size), "s3_key": _s(record.key)}


def _blob_record(item: dict) -> BlobRecord:
    return BlobRecord(digest=_str(item, "digest") or "", size=_int(item, "size_bytes"),
                      key=_str(item, "s3_key") or "")


class DynamoBlobIndex:
    def __init__(self, client: Any, table: str) -> None:
        self._table = _Table(client, table)

    def get_link(self, repository: str, digest: str) -> BlobRecord | None:
        item = self._table.get(keys.blob_link(repository, digest))
        return _blob_record(item) if item else None

    def get_blob(self, digest: str) -> BlobRecord | None:
        item = self._table.get(keys.blob(digest))
        return _blob_record(item) if item else None

    def add_blob(self, record: BlobRecord) -> BlobRecord:
        ok, _, old = _conditional(lambda: self._table.put(
            _blob_item(keys.blob(record.digest), record), BLOB_IS_NEW, return_old_on_failure=True))
        if ok:
            return record
        return _blob_record(old) if old else (self.get_blob(record.digest) or record)

    def link(self, repository: str, record: BlobRecord) -> None:
        self._table.put(_blob_item(keys.blob_link(repository, record.digest), record))

    def unlink(self, repository: str, digest: str) -> bool:
        ok, _, _ = _conditional(lambda: self._table.call(
            "delete_item", TableName=self._table.name, Key=keys.blob_link(repository, digest),
            ConditionExpression=ITEM_EXISTS))
        return ok


# --- upload sessions ------------------------------------------------------------

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
        "repo_name": _s(session.repository),
        "blob_key": _s(session.blob_key),
        "received_bytes": _n(session.offset),
        "hash_algorithm": _s(session.hash_algorithm),
        "hash_state": _b(session.hash_state),
        "part_etags": _b(_pack_etags(session.part_etags)),
        "tail_size": _n(session.tail_size),
        keys.TTL_ATTRIBUTE: _n(session.expires_at),
    }
    if session.multipart_id:
        item["multipart_id"] = _s(session.multipart_id)
    if session.tail_key:
        item["tail_key"] = _s(session.tail_key)
    if session.owner is not None:
        item["owner_name"] = _s(session.owner)
    return item


def _session(item: dict) -> UploadSession:
    return UploadSession(
        upload_id=item[keys.PK]["S"].split("#", 1)[1],
        repository=_str(item, "repo_name") or "",
        blob_key=_str(item, "blob_key") or "",
        offset=_int(item, "received_bytes"),
        hash_algorithm=_str(item, "hash_algorithm") or "sha256",
        hash_state=_bytes(item, "hash_state") or b"",
        multipart_id=_str(item, "multipart_id"),
        part_etags=_unpack_etags(_bytes(item, "part_etags")),
        tail_key=_str(item, "tail_key"),
        tail_size=_int(item, "tail_size"),
        expires_at=_int(item, keys.TTL_ATTRIBUTE),
        owner=_str(item, "owner_name"),
    )


class DynamoUploadSessions:
    def __init__(self, client: Any, table: str) -> None:
        self._table = _Table(client, table)

    def create(self, session: UploadSession) -> None:
        self._table.put(_session_item(session), UPLOAD_IS_NEW)

    def get(self, upload_id: str) -> UploadSession | None:
        item = self._table.get(keys.upload(upload_id))
        return _session(item) if item else None

    def claim(self, upload_id: str, repository: str, token: str, now: int, lease_until: int,
              expected_offset: int | None, owner: str | None = None) -> UploadSession:
        condition = UPLOAD_IS_FREE
        values = {":repo": _s(repository), ":now": _n(now), ":token": _s(token), ":until": _n(lease_until)}
        if owner is not None:
            condition = f"{condition} AND {UPLOAD_OWNED_BY}"
            values[":owner"] = _s(owner)
        if expected_offset is not None:
            condition = f"{condition} AND {UPLOAD_AT_OFFSET}"
            values[":expected"] = _n(expected_offset)
        ok, response, old = _conditional(lambda: self._table.call(
            "update_item", TableName=self._table.name, Key=keys.upload(upload_id),
            UpdateExpression="SET lease_token = :token, lease_until = :until",
            ConditionExpression=condition, ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD"))
        if ok:
            return _session(response["Attributes"])
        if (not old or _str(old, "repo_name") != repository or _int(old, keys.TTL_ATTRIBUTE) <= now
                or (owner is not None and _str(old, "owner_name") != owner)):
            raise UploadMissing(upload_id)
        busy = "lease_token" in old and _int(old, "lease_until") >= now
        raise UploadConflict(_session(old), busy=busy)

    def save(self, session: UploadSession, token: str) -> None:
        ok, _, _ = _conditional(lambda: self._table.put(
            _session_item(session), LEASE_HELD, {":token": _s(token)}))
        if not ok:
            raise UploadConflict(None)

    def release(self, upload_id: str, token: str) -> None:
        _conditional(lambda: self._table.call(
            "update_item", TableName=self._table.name, Key=keys.upload(upload_id),
            UpdateExpression="REMOVE lease_token, lease_until", ConditionExpression=LEASE_HELD,
            ExpressionAttributeValues={":token": _s(token)}))

    def delete(self, upload_id: str, repository: str, token: str | None = None,
               owner: str | None = None) -> UploadSession:
        condition, values = UPLOAD_IN_REPO, {":repo": _s(repository)}
        if owner is not None:
            condition, values = f"{condition} AND {UPLOAD_OWNED_BY}", {**values, ":owner": _s(owner)}
        if token is not None:
            condition, values = f"{condition} AND {LEASE_HELD}", {**values, ":token": _s(token)}
        ok, response, _ = _conditional(lambda: self._table.call(
            "delete_item", TableName=self._table.name, Key=keys.upload(upload_id),
            ConditionExpression=condition, ExpressionAttributeValues=values, ReturnValues="ALL_OLD"))
        if not ok:
            raise UploadMissing(upload_id)
        return _session(response["Attributes"])


# --- manifests, tags, referrers, catalog ---------------------------------------------

def _manifest_attributes(record: ManifestRecord) -> dict:
    item: dict[str, Any] = {
        "digest": _s(record.digest),
        "media_type": _s(record.media_type),
        "size_bytes": _n(record.size),
    }
    if record.body is not None:
        item["body_inline"] = _b(record.body)
    if record.body_key:
        item["body_key"] = _s(record.body_key)
    if record.subject:
        item["subject"] = _s(record.subject)
    if record.artifact_type:
        item["artifact_type"] = _s(record.artifact_type)
    if record.annotations:
        annotations = json.dumps(record.annotations, separators=(",", ":"))
        if len(annotations) <= ANNOTATIONS_ITEM_LIMIT:  # ASCII: characters are bytes
            item["annotations"] = _s(annotations)
        else:
            item["annotations_in_body"] = {"BOOL": True}
    return item


def _manifest_record(item: dict) -> ManifestRecord:
    annotations = _str(item, "annotations")
    return ManifestRecord(
        digest=_str(item, "digest") or "",
        media_type=_str(item, "media_type") or "",
        size=_int(item, "size_bytes"),
        body=_bytes(item, "body_inline"),
        body_key=_str(item, "body_key"),
        subject=_str(item, "subject"),
        artifact_type=_str(item, "artifact_type"),
        annotations=json.loads(annotations) if annotations else None,
    )


class DynamoManifestIndex:
    def __init__(self, client: Any, table: str) -> None:
        self._table = _Table(client, table)

    def get_manifest(self, repository: str, digest: str) -> ManifestRecord | None:
        item = self._table.get(keys.manifest(repository, digest))
        return _manifest_record(item) if item else None

    def get_tag(self, repository: str, tag: str) -> ManifestRecord | None:
        item = self._table.get(keys.tag(repository, tag))
        return _manifest_record(item) if item else None

    def put_manifest(self, repository: str, record: ManifestRecord, tag: str | None,
                     blobs: dict[str, int], manifests: Sequence[str], referrer_of: str | None) -> None:
        name = self._table.name
        attributes = _manifest_attributes(record)
        writes: list[dict] = [
            {"Put": {"TableName": name, "Item": {**keys.manifest(repository, record.digest), **attributes}}},
            {"Put": {"TableName": name, "Item": keys.catalog_entry(repository)}},
        ]
        if tag is not None:
            writes.append({"Put": {"TableName": name, "Item": {**keys.tag(repository, tag), **attributes}}})
        if referrer_of is not None:
            writes.append({"Put": {"TableName": name, "Item": {
                **keys.referrer(repository, referrer_of, record.digest),
                **{k: v for k, v in attributes.items() if k not in ("body_inline", "body_key")}}}})
        checks: list[tuple[str, str, dict]] = [
            ("blob", digest, {"ConditionCheck": {
                "TableName": name, "Key": keys.blob_link(repository, digest),
                "ConditionExpression": LINK_EXISTS_WITH_SIZE,
                "ExpressionAttributeValues": {":size": _n(size)}}})
            for digest, size in blobs.items()
        ] + [
            ("manifest", digest, {"ConditionCheck": {
                "TableName": name, "Key": keys.manifest(repository, digest),
                "ConditionExpression": ITEM_EXISTS}})
            for digest in dict.fromkeys(manifests) if digest != record.digest
        ]
        room = MAX_TRANSACTION_ITEMS - len(writes)
        # References beyond what one transaction holds are checked by reads
        # first (not atomic with the write; only manifests with ~95+ parts).
        self._check_by_reading(repository, checks[room:], blobs)
        atomic = checks[:room]
        try:
            self._table.transact(writes + [check for _, _, check in atomic])
        except ClientError as error:
            reasons = getattr(error, "reasons", [])
            failed = [atomic[i - len(writes)] for i, code in enumerate(reasons)
                      if code == "ConditionalCheckFailed" and i >= len(writes)]
            if not failed:
                raise
            raise MissingReferences([d for kind, d, _ in failed if kind == "blob"],
                                    [d for kind, d, _ in failed if kind == "manifest"]) from error

    def _check_by_reading(self, repository: str, checks: list[tuple[str, str, dict]],
                          blobs: dict[str, int]) -> None:
        missing_blobs, missing_manifests = [], []
        for kind, digest, _ in checks:
            if kind == "blob":
                item = self._table.get(keys.blob_link(repository, digest), "size_bytes")
                if not item or _int(item, "size_bytes") != blobs[digest]:
                    missing_blobs.append(digest)
            elif not self._table.get(keys.manifest(repository, digest), "PK"):
                missing_manifests.append(digest)
        if missing_blobs or missing_manifests:
            raise MissingReferences(missing_blobs, missing_manifests)

    def delete_manifest(self, repository: str, digest: str) -> ManifestRecord | None:
        item = self._table.get(keys.manifest(repository, digest))
        if not item:
            return None
        record = _manifest_record(item)
        name = self._table.name
        deletes: list[dict] = [{"Delete": {"TableName": name, "Key": keys.manifest(repository, digest),
                                           "ConditionExpression": ITEM_EXISTS}}]
        if record.subject:
            deletes.append({"Delete": {"TableName": name,
                                       "Key": keys.referrer(repository, record.subject, digest)}})
        # Tags pointing at the manifest go with it (distribution-spec "Deleting Manifests").
        for tag_item in self._table.query(
                keys.repository_partition(repository), keys.TAG_PREFIX, projection="PK, SK, digest",
                filter_expression=TAG_POINTS_AT, values={":digest": _s(digest)}):
            tag_key = {keys.PK: tag_item[keys.PK], keys.SK: tag_item[keys.SK]}
            deletes.append({"Delete": {"TableName": name, "Key": tag_key,
                                       "ConditionExpression": TAG_POINTS_AT,
                                       "ExpressionAttributeValues": {":digest": _s(digest)}}})
        for start in range(0, len(deletes), MAX_TRANSACTION_ITEMS):
            try:
                self._table.transact(deletes[start:start + MAX_TRANSACTION_ITEMS])
            except ClientError:
                if start == 0:
                    return None  # deleted concurrently by someone else
                raise
        return record

    def delete_tag(self, repository: str, tag: str) -> bool:
        ok, _, _ = _conditional(lambda: self._table.call(
            "delete_item", TableName=self._table.name, Key=keys.tag(repository, tag),
            ConditionExpression=ITEM_EXISTS))
        return ok

    def _page(self, pk: str, prefix: str, limit: int, after: str | None) -> Page:
        items = list(self._table.query(
            pk, prefix, limit=limit + 1, after=f"{prefix}{after}" if after is not None else None,
            projection="SK"))
        names = [item[keys.SK]["S"][len(prefix):] for item in items]
        return Page(names[:limit], has_more=len(names) > limit)

    def list_tags(self, repository: str, limit: int, after: str | None) -> Page:
        return self._page(keys.repository_partition(repository), keys.TAG_PREFIX, limit, after)

    def list_referrers(self, repository: str, subject: str) -> list[Referrer]:
        referrers = []
        for item in self._table.query(keys.repository_partition(repository), keys.referrer_prefix(subject),
                                      projection="digest, media_type, size_bytes, artifact_type, annotations,"
                                                 " annotations_in_body"):
            record = _manifest_record(item)
            referrers.append(Referrer(record.digest, record.media_type, record.size,
                                      record.artifact_type, record.annotations,
                                      annotations_in_body="annotations_in_body" in item))
        return referrers

    def repository_exists(self, repository: str) -> bool:
        return self._table.get(keys.catalog_entry(repository), "PK") is not None

    def list_repositories(self, limit: int, after: str | None) -> Page:
        return self._page(keys.CATALOG, keys.REPO_PREFIX, limit, after)


# --- identities, grants, signing keys ---------------------------------------------------

def _identity_item(record: IdentityRecord) -> dict:
    return {
        **keys.identity(record.name),
        "kind": _s(record.kind),
        "password_hash": _s(record.password_hash),
        "admin": {"BOOL": record.admin},
        "groups": {"L": [_s(group) for group in record.groups]},
        "generation": _n(record.generation),
        "created_at": _n(record.created_at),
    }


def _identity_record(item: dict) -> IdentityRecord:
    return IdentityRecord(
        name=item[keys.SK]["S"],
        kind=_str(item, "kind") or "user",
        password_hash=_str(item, "password_hash") or "",
        admin=bool(item.get("admin", {}).get("BOOL", False)),
        groups=tuple(value["S"] for value in item.get("groups", {}).get("L", [])),
        generation=_int(item, "generation"),
        failed_logins=_int(item, "failed_logins"),
        locked_until=_int(item, "locked_until"),
        created_at=_int(item, "created_at"),
    )


class DynamoAuthStore:
    def __init__(self, client: Any, table: str) -> None:
        self._table = _Table(client, table)

    def _partition(self, pk: str) -> Iterator[dict]:
        kwargs: dict[str, Any] = {"TableName": self._table.name,
                                  "KeyConditionExpression": "PK = :pk",
                                  "ExpressionAttributeValues": {":pk": _s(pk)}}
        while True:
            page = self._table.call("query", **kwargs)
            yield from page.get("Items", [])
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_identity(self, name: str) -> IdentityRecord | None:
        item = self._table.get(keys.identity(name))
        return _identity_record(item) if item else None

    def create_identity(self, record: IdentityRecord) -> bool:
        ok, _, _ = _conditional(lambda: self._table.put(_identity_item(record), IDENTITY_IS_NEW))
        return ok

    def update_identity(self, name: str, *, password_hash: str | None = None,
                        admin: bool | None = None, groups: Sequence[str] | None = None) -> bool:
        # Attribute names go through placeholders: ADMIN and others are reserved words.
        sets, values, names = [], {}, {}
        if password_hash is not None:
            # A new secret: the generation moves on (refresh tokens of the old one die) and
            # any lockout ends.
            sets += ["#hash = :hash", "#gen = #gen + :one", "#failed = :zero", "#locked = :zero"]
            values.update({":hash": _s(password_hash), ":one": _n(1), ":zero": _n(0)})
            names.update({"#hash": "password_hash", "#gen": "generation",
                          "#failed": "failed_logins", "#locked": "locked_until"})
        if admin is not None:
            sets.append("#admin = :admin")
            values[":admin"] = {"BOOL": admin}
            names["#admin"] = "admin"
        if groups is not None:
            sets.append("#groups = :groups")
            values[":groups"] = {"L": [_s(group) for group in groups]}
            names["#groups"] = "groups"
        if not sets:
            return self.get_identity(name) is not None
        ok, _, _ = _conditional(lambda: self._table.call(
            "update_item", TableName=self._table.name, Key=keys.identity(name),
            UpdateExpression="SET " + ", ".join(sets), ConditionExpression=ITEM_EXISTS,
            ExpressionAttributeValues=values, ExpressionAttributeNames=names))
        return ok

    def delete_identity(self, name: str) -> bool:
        ok, _, _ = _conditional(lambda: self._table.call(
            "delete_item", TableName=self._table.name, Key=keys.identity(name),
            ConditionExpression=ITEM_EXISTS))
        return ok

    def list_identities(self) -> list[IdentityRecord]:
        return [_identity_record(item) for item in self._partition(keys.IDENTITY)]

    def record_failed_login(self, name: str, now: int, threshold: int,
                            max_lock_seconds: int) -> None:
        ok, response, _ = _conditional(lambda: self._table.call(
            "update_item", TableName=self._table.name, Key=keys.identity(name),
            UpdateExpression="ADD #failed :one", ConditionExpression=ITEM_EXISTS,
            ExpressionAttributeNames={"#failed": "failed_logins"},
            ExpressionAttributeValues={":one": _n(1)}, ReturnValues="UPDATED_NEW"))
        if not ok:
            return
        failures = _int(response["Attributes"], "failed_logins")
        if failures >= threshold:
            # 1 s after the threshold-th failure, then 2, 4, ... up to the cap.
            lock = min(2 ** min(failures - threshold, 30), max_lock_seconds)
            _conditional(lambda: self._table.call(
                "update_item", TableName=self._table.name, Key=keys.identity(name),
                UpdateExpression="SET #locked = :until", ConditionExpression=ITEM_EXISTS,
                ExpressionAttributeNames={"#locked": "locked_until"},
                ExpressionAttributeValues={":until": _n(now + lock)}))

    def clear_failed_logins(self, name: str) -> None:
        _conditional(lambda: self._table.call(
            "update_item", TableName=self._table.name, Key=keys.identity(name),
            UpdateExpression="SET #failed = :zero, #locked = :zero",
            ConditionExpression=ITEM_EXISTS,
            ExpressionAttributeNames={"#failed": "failed_logins", "#locked": "locked_until"},
            ExpressionAttributeValues={":zero": _n(0)}))

    def list_grants(self) -> list[tuple[str, str, frozenset[str]]]:
        return [(_str(item, "pattern") or "", _str(item, "principal") or "",
                 frozenset(value["S"] for value in item.get("actions", {}).get("L", [])))
                for item in self._partition(keys.GRANT)]

    def put_grant(self, pattern: str, principal: str, actions: frozenset[str]) -> None:
        self._table.put({**keys.grant(pattern, principal), "pattern": _s(pattern),
                         "principal": _s(principal),
                         "actions": {"L": [_s(a) for a in sorted(actions)]}})

    def delete_grant(self, pattern: str, principal: str) -> bool:
        ok, _, _ = _conditional(lambda: self._table.call(
            "delete_item", TableName=self._table.name, Key=keys.grant(pattern, principal),
            ConditionExpression=ITEM_EXISTS))
        return ok

    def get_signing_keys(self) -> tuple[bytes, bytes | None] | None:
        item = self._table.get(keys.signing_keys())
        if not item or _bytes(item, "current_key") is None:
            return None
        return _bytes(item, "current_key") or b"", _bytes(item, "previous_key")

    def put_signing_keys(self, current: bytes, previous: bytes | None,
                         replacing: bytes | None) -> bool:
        item = {**keys.signing_keys(), "current_key": _b(current)}
        if previous is not None:
            item["previous_key"] = _b(previous)
        if replacing is None:
            ok, _, _ = _conditional(lambda: self._table.put(item, KEYS_ARE_NEW))
        else:
            ok, _, _ = _conditional(lambda: self._table.put(item, KEYS_UNCHANGED,
                                                            {":replacing": _b(replacing)}))
        return ok

    def bootstrap_admin(self, record: IdentityRecord) -> bool:
        name = self._table.name
        try:
            self._table.transact([
                {"Put": {"TableName": name, "Item": keys.bootstrap_marker(),
                         "ConditionExpression": BOOTSTRAP_NOT_DONE}},
                {"Put": {"TableName": name, "Item": _identity_item(record),
                         "ConditionExpression": IDENTITY_IS_NEW}},
            ])
        except ClientError as error:
            if "ConditionalCheckFailed" in getattr(error, "reasons", []):
                return False
            raise
        return True
