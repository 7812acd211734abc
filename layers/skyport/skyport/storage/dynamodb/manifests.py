"""ManifestIndex on the table: manifests, tags, referrers and the catalog."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from .. import keys
from ..ports import ManifestRecord, MissingReferences, Page, Referrer, StorageUnavailable, TagImmutable
from .table import (
    ITEM_EXISTS,
    MAX_BATCH_GET_KEYS,
    MAX_TRANSACTION_ITEMS,
    B,
    N,
    S,
    Table,
    conditional,
    get_bytes,
    get_int,
    get_str,
)

# A manifest may only reference a blob linked into its repository, at the size it claims.
LINK_EXISTS_WITH_SIZE = "attribute_exists(PK) AND size_bytes = :size"
# A tag is removed with its manifest only while it still points at it.
TAG_POINTS_AT = "digest = :digest"
# An immutable tag (skyport/immutability.py) is created, or written again naming the same
# manifest, never moved: two pushes of one new immutable tag cannot both win.
TAG_NEW_OR_SAME_DIGEST = "attribute_not_exists(PK) OR digest = :digest"
# The catalog entry is the one read before finding the repository empty: no push has
# rewritten it since (each push gives it a new push_id, in the push's transaction).
CATALOG_ENTRY_UNCHANGED = "push_id = :push_id"
CATALOG_ENTRY_UNCHANGED_LEGACY = "attribute_exists(PK) AND attribute_not_exists(push_id)"
# Retention deletes a manifest only as it evaluated it: no push has named it since (every
# push of the manifest, by tag or by digest, rewrites its item and so its pushed_ms), so a
# push racing a retention run always wins (skyport/retention.py). Items written before
# pushed_ms existed have none: unchanged means still none.
MANIFEST_UNCHANGED_SINCE = "pushed_ms = :pushed_ms"
MANIFEST_UNCHANGED_SINCE_LEGACY = "attribute_exists(PK) AND attribute_not_exists(pushed_ms)"
# A delete by digest reads the manifest and its tags again when a push came in between,
# at most this many times (each try is a few reads; pushes of one manifest are seconds apart).
DELETE_ATTEMPTS = 5


class _PushedMeanwhile(Exception):
    """The manifest was pushed again between the delete's read and its transaction."""


# Annotations ride in the manifest, tag and referrer items so the referrers API
# answers from one query. A 4 MiB manifest may carry more than a 400 KB item
# holds: past this size they are flagged and read from the manifest body.
ANNOTATIONS_ITEM_LIMIT = 64 * 1024


def _manifest_attributes(record: ManifestRecord) -> dict:
    item: dict[str, Any] = {
        "digest": S(record.digest),
        "media_type": S(record.media_type),
        "size_bytes": N(record.size),
    }
    if record.body is not None:
        item["body_inline"] = B(record.body)
    if record.body_key:
        item["body_key"] = S(record.body_key)
    if record.subject:
        item["subject"] = S(record.subject)
    if record.artifact_type:
        item["artifact_type"] = S(record.artifact_type)
    if record.annotations:
        annotations = json.dumps(record.annotations, separators=(",", ":"))
        if len(annotations) <= ANNOTATIONS_ITEM_LIMIT:  # ASCII: characters are bytes
            item["annotations"] = S(annotations)
        else:
            item["annotations_in_body"] = {"BOOL": True}
    return item


def _manifest_record(item: dict) -> ManifestRecord:
    annotations = get_str(item, "annotations")
    return ManifestRecord(
        digest=get_str(item, "digest") or "",
        media_type=get_str(item, "media_type") or "",
        size=get_int(item, "size_bytes"),
        body=get_bytes(item, "body_inline"),
        body_key=get_str(item, "body_key"),
        subject=get_str(item, "subject"),
        artifact_type=get_str(item, "artifact_type"),
        annotations=json.loads(annotations) if annotations else None,
    )


def _action_key(action: dict) -> dict:
    """The key of a transaction action (a ConditionCheck or an Update)."""
    return next(iter(action.values()))["Key"]


class DynamoManifestIndex:
    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def get_manifest(self, repository: str, digest: str) -> ManifestRecord | None:
        item = self._table.get(keys.manifest(repository, digest))
        return _manifest_record(item) if item else None

    def get_tag(self, repository: str, tag: str) -> ManifestRecord | None:
        item = self._table.get(keys.tag(repository, tag))
        return _manifest_record(item) if item else None

    def put_manifest(
        self,
        repository: str,
        record: ManifestRecord,
        tag: str | None,
        blobs: dict[str, int],
        manifests: Sequence[str],
        referrer_of: str | None,
        immutable_tag: bool = False,
    ) -> None:
        name = self._table.name
        # pushed_ms on the MANIFEST item and on the TAG item: when each was last written
        # (retention's "pushed within", GC's grace period, usage's last push).
        attributes = {**_manifest_attributes(record), "pushed_ms": N(int(time.time() * 1000))}
        # The tag this push named, on the MANIFEST item only: its stream record is what
        # manifest.pushed is read from (skyport/events.py), and it cannot see the TAG item.
        pushed_with = {"pushed_with_tag": S(tag)} if tag is not None else {}
        writes: list[dict] = [
            {
                "Put": {
                    "TableName": name,
                    "Item": {**keys.manifest(repository, record.digest), **attributes, **pushed_with},
                }
            },
            {
                "Put": {
                    "TableName": name,
                    "Item": {**keys.catalog_entry(repository), "push_id": S(uuid.uuid4().hex)},
                }
            },
        ]
        tag_write = None
        if tag is not None:
            tag_put: dict[str, Any] = {"TableName": name, "Item": {**keys.tag(repository, tag), **attributes}}
            if immutable_tag:
                tag_put["ConditionExpression"] = TAG_NEW_OR_SAME_DIGEST
                tag_put["ExpressionAttributeValues"] = {":digest": S(record.digest)}
                tag_put["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
                tag_write = len(writes)
            writes.append({"Put": tag_put})
        if referrer_of is not None:
            writes.append(
                {
                    "Put": {
                        "TableName": name,
                        "Item": {
                            **keys.referrer(repository, referrer_of, record.digest),
                            **{k: v for k, v in attributes.items() if k not in ("body_inline", "body_key")},
                        },
                    }
                }
            )
        # Each reference is stamped as used now (used_ms) under its condition: the garbage
        # collector deletes a link or manifest only while unused since its cutoff, so either
        # it deleted first (this transaction fails: MANIFEST_BLOB_UNKNOWN) or its delete
        # fails (the argument: skyport/gc/__init__.py).
        checks = self._checks(repository, record.digest, blobs, manifests, stamp=attributes["pushed_ms"])
        room = MAX_TRANSACTION_ITEMS - len(writes)
        # References beyond what one transaction holds are checked by reads first (a
        # refused push writes nothing), then stamped one by one under the same condition,
        # before the transaction: not atomic with it, which the collector's grace period
        # covers (only manifests with ~95+ parts, and at most ManifestService's cap of them).
        self._check_by_reading(repository, checks[room:], blobs)
        self._stamp_one_by_one(checks[room:])
        atomic = checks[:room]
        try:
            self._table.transact(writes + [check for _, _, check in atomic])
        except ClientError as error:
            reasons = getattr(error, "reasons", [])
            if (
                tag_write is not None
                and tag is not None
                and reasons[tag_write : tag_write + 1] == ["ConditionalCheckFailed"]
            ):
                old = error.response.get("CancellationReasons", [])[tag_write].get("Item") or {}
                raise TagImmutable(tag, get_str(old, "digest")) from error
            failed = [
                atomic[i - len(writes)]
                for i, code in enumerate(reasons)
                if code == "ConditionalCheckFailed" and i >= len(writes)
            ]
            if not failed:
                raise
            raise MissingReferences(
                [d for kind, d, _ in failed if kind == "blob"],
                [d for kind, d, _ in failed if kind == "manifest"],
            ) from error

    def _checks(
        self,
        repository: str,
        digest: str,
        blobs: dict[str, int],
        manifests: Sequence[str],
        stamp: dict[str, str] | None = None,
    ) -> list[tuple[str, str, dict]]:
        """One transaction action per reference: a ConditionCheck, or with ``stamp`` an
        Update that sets used_ms to it under the same condition."""
        name = self._table.name

        def action(key: dict, condition: str, values: dict) -> dict:
            if stamp is None:
                check: dict[str, Any] = {"TableName": name, "Key": key, "ConditionExpression": condition}
                if values:
                    check["ExpressionAttributeValues"] = values
                return {"ConditionCheck": check}
            return {
                "Update": {
                    "TableName": name,
                    "Key": key,
                    "UpdateExpression": "SET used_ms = :used_ms",
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": {**values, ":used_ms": stamp},
                }
            }

        return [
            (
                "blob",
                digest_,
                action(keys.blob_link(repository, digest_), LINK_EXISTS_WITH_SIZE, {":size": N(size)}),
            )
            for digest_, size in blobs.items()
        ] + [
            ("manifest", child, action(keys.manifest(repository, child), ITEM_EXISTS, {}))
            for child in dict.fromkeys(manifests)
            if child != digest
        ]

    def _stamp_one_by_one(self, checks: list[tuple[str, str, dict]]) -> None:
        """The Update actions of ``checks`` as single conditional writes; MissingReferences
        naming those whose condition failed (removed since they were read)."""
        missing: dict[str, list[str]] = {"blob": [], "manifest": []}
        for kind, digest, action in checks:
            update = action["Update"]
            ok, _, _ = conditional(lambda update=update: self._table.call("update_item", **update))
            if not ok:
                missing[kind].append(digest)
        if missing["blob"] or missing["manifest"]:
            raise MissingReferences(missing["blob"], missing["manifest"])

    def check_references(
        self, repository: str, digest: str, blobs: dict[str, int], manifests: Sequence[str]
    ) -> None:
        self._check_by_reading(repository, self._checks(repository, digest, blobs, manifests), blobs)

    def _check_by_reading(
        self, repository: str, checks: list[tuple[str, str, dict]], blobs: dict[str, int]
    ) -> None:
        """BatchGetItem, MAX_BATCH_GET_KEYS references at a time; the first batch with a
        reference missing (or a blob at another size) ends the check, so a manifest of
        unknown references costs one read however many it lists."""
        for start in range(0, len(checks), MAX_BATCH_GET_KEYS):
            batch = checks[start : start + MAX_BATCH_GET_KEYS]
            # One partition (the repository's), so the sort key names each item.
            found = {
                item[keys.SK]["S"]: item
                for item in self._table.batch_get(
                    [_action_key(check) for _, _, check in batch], "PK, SK, size_bytes"
                )
            }
            missing_blobs, missing_manifests = [], []
            for kind, digest, check in batch:
                item = found.get(_action_key(check)[keys.SK]["S"])
                if kind == "blob":
                    if not item or get_int(item, "size_bytes") != blobs[digest]:
                        missing_blobs.append(digest)
                elif not item:
                    missing_manifests.append(digest)
            if missing_blobs or missing_manifests:
                raise MissingReferences(missing_blobs, missing_manifests)

    def delete_manifest(
        self,
        repository: str,
        digest: str,
        keep_tag: Callable[[str], bool] | None = None,
        pushed_ms: int | None = None,
    ) -> ManifestRecord | None:
        if pushed_ms is not None:
            # Retention: the push it evaluated, or nothing (a newer push wins).
            return self._delete_manifest_as_read(repository, digest, keep_tag, pushed_ms)
        # A push of the manifest (with a tag) between the read of the tags naming it and
        # the delete would leave that tag naming a deleted manifest: the delete is made
        # conditional on the push it read, and read again when a push came in between.
        for _ in range(DELETE_ATTEMPTS):
            item = self._table.get(keys.manifest(repository, digest))
            if not item:
                return None
            read_pushed_ms = get_int(item, "pushed_ms") if "pushed_ms" in item else 0
            try:
                return self._delete_manifest_as_read(repository, digest, keep_tag, read_pushed_ms, item)
            except _PushedMeanwhile:
                continue
        raise StorageUnavailable("the manifest kept being pushed while it was being deleted")

    def _delete_manifest_as_read(
        self,
        repository: str,
        digest: str,
        keep_tag: Callable[[str], bool] | None,
        pushed_ms: int,
        item: dict | None = None,
    ) -> ManifestRecord | None:
        """Delete the manifest as last pushed at ``pushed_ms`` (0: an item from before
        pushed_ms) with its tags; None when it is gone or was pushed since (retention's
        call), _PushedMeanwhile instead of None when ``item`` was read by the caller."""
        retry_on_push = item is not None
        item = item or self._table.get(keys.manifest(repository, digest))
        if not item:
            return None
        record = _manifest_record(item)
        name = self._table.name
        manifest_delete: dict[str, Any] = {"TableName": name, "Key": keys.manifest(repository, digest)}
        if pushed_ms:
            manifest_delete["ConditionExpression"] = MANIFEST_UNCHANGED_SINCE
            manifest_delete["ExpressionAttributeValues"] = {":pushed_ms": N(pushed_ms)}
        else:
            manifest_delete["ConditionExpression"] = MANIFEST_UNCHANGED_SINCE_LEGACY
        deletes: list[dict] = [
            {"Delete": manifest_delete},
            # Its last-pull record goes with it (skyport/pulls.py); there may be none.
            {"Delete": {"TableName": name, "Key": keys.manifest_pull(repository, digest)}},
            # So does its scan record (skyport/scanning/service.py); there may be none.
            {"Delete": {"TableName": name, "Key": keys.scan_record(repository, digest)}},
        ]
        if record.subject:
            deletes.append(
                {"Delete": {"TableName": name, "Key": keys.referrer(repository, record.subject, digest)}}
            )
        # Tags pointing at the manifest go with it (distribution-spec "Deleting Manifests").
        # Read consistently: a tag written by the push whose pushed_ms was read is seen.
        for tag_item in self._table.query(
            keys.repository_partition(repository),
            keys.TAG_PREFIX,
            projection="PK, SK, digest",
            filter_expression=TAG_POINTS_AT,
            values={":digest": S(digest)},
            consistent=True,
        ):
            tag_key = {keys.PK: tag_item[keys.PK], keys.SK: tag_item[keys.SK]}
            tag_name = tag_item[keys.SK]["S"][len(keys.TAG_PREFIX) :]
            if keep_tag is not None and keep_tag(tag_name):
                # Before any write: an immutable tag keeps its manifest (skyport/immutability.py).
                raise TagImmutable(tag_name, digest)
            deletes.append(
                {
                    "Delete": {
                        "TableName": name,
                        "Key": tag_key,
                        "ConditionExpression": TAG_POINTS_AT,
                        "ExpressionAttributeValues": {":digest": S(digest)},
                    }
                }
            )
        for start in range(0, len(deletes), MAX_TRANSACTION_ITEMS):
            try:
                self._table.transact(deletes[start : start + MAX_TRANSACTION_ITEMS])
            except ClientError as error:
                if start == 0 and "ConditionalCheckFailed" in getattr(error, "reasons", []):
                    # Deleted by someone else, or pushed (or a tag of it moved) since read.
                    if retry_on_push and self._table.get(keys.manifest(repository, digest)):
                        raise _PushedMeanwhile from error
                    return None
                raise
        return record

    def forget_repository_if_empty(self, repository: str) -> bool:
        """Remove the repository's catalog entry when it holds no manifest (stream:
        repository.deleted). Safe against a concurrent push: the entry is read first, the
        manifests queried (consistently) after, and the delete is conditional on the entry
        being the one read; a push that lands in between rewrote it (a new push_id), and a
        push that landed before is seen by the query."""
        entry = self._table.call(
            "get_item", TableName=self._table.name, Key=keys.catalog_entry(repository), ConsistentRead=True
        ).get("Item")
        if entry is None:
            return False
        partition = keys.repository_partition(repository)
        if next(
            self._table.query(partition, keys.MANIFEST_PREFIX, limit=1, projection="SK", consistent=True),
            None,
        ):
            return False
        push_id = get_str(entry, "push_id")
        condition: dict[str, Any] = (
            {
                "ConditionExpression": CATALOG_ENTRY_UNCHANGED,
                "ExpressionAttributeValues": {":push_id": S(push_id)},
            }
            if push_id
            else {"ConditionExpression": CATALOG_ENTRY_UNCHANGED_LEGACY}
        )
        ok, _, _ = conditional(
            lambda: self._table.call(
                "delete_item", TableName=self._table.name, Key=keys.catalog_entry(repository), **condition
            )
        )
        return ok

    def delete_tag(self, repository: str, tag: str) -> bool:
        return self._table.delete_existing(keys.tag(repository, tag))

    def _page(self, pk: str, prefix: str, limit: int, after: str | None) -> Page:
        items = list(
            self._table.query(
                pk,
                prefix,
                limit=limit + 1,
                after=f"{prefix}{after}" if after is not None else None,
                projection="SK",
            )
        )
        names = [item[keys.SK]["S"][len(prefix) :] for item in items]
        return Page(names[:limit], has_more=len(names) > limit)

    def list_tags(self, repository: str, limit: int, after: str | None) -> Page:
        return self._page(keys.repository_partition(repository), keys.TAG_PREFIX, limit, after)

    def tagged(self, repository: str) -> Iterator[tuple[str, ManifestRecord]]:
        # A TAG item holds a copy of its manifest item: one paged Query, no read per tag.
        for item in self._table.query(keys.repository_partition(repository), keys.TAG_PREFIX):
            yield item[keys.SK]["S"][len(keys.TAG_PREFIX) :], _manifest_record(item)

    def list_referrers(self, repository: str, subject: str) -> list[Referrer]:
        referrers = []
        for item in self._table.query(
            keys.repository_partition(repository),
            keys.referrer_prefix(subject),
            projection="digest, media_type, size_bytes, artifact_type, annotations, annotations_in_body",
        ):
            record = _manifest_record(item)
            referrers.append(
                Referrer(
                    record.digest,
                    record.media_type,
                    record.size,
                    record.artifact_type,
                    record.annotations,
                    annotations_in_body="annotations_in_body" in item,
                )
            )
        return referrers

    def repository_exists(self, repository: str) -> bool:
        return self._table.get(keys.catalog_entry(repository), "PK") is not None

    def list_repositories(self, limit: int, after: str | None) -> Page:
        return self._page(keys.CATALOG, keys.REPO_PREFIX, limit, after)
