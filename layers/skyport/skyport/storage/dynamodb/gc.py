"""The garbage collector's storage on the table (skyport/gc): its run item, the paged
scans of links and blobs, and its conditional deletes and marks.

Each delete is conditional on the item being unused since the run's cutoff (a push, an
upload or a mount that made it live again stamped ``used_ms`` after it): the argument
is in skyport/gc/__init__.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from .. import keys
from .table import ITEM_EXISTS, N, S, Table, conditional, get_bytes, get_int, get_str

# A link goes only while unused since the cutoff: a manifest push that references it (its
# transaction sets used_ms), a mount or an upload (they rewrite it with used_ms) since then
# keeps it. Items from before used_ms existed count as unused. (attribute_exists: a delete
# of what is gone already is not counted as this run's.)
LINK_UNUSED_SINCE = "attribute_exists(PK) AND (attribute_not_exists(used_ms) OR used_ms < :cutoff)"
# A blob goes only if no surviving link marked it in this run and nothing used it since the
# cutoff (an upload of the same digest or a mount touches META before writing its link).
BLOB_UNMARKED_AND_UNUSED = (
    "attribute_exists(PK) AND (attribute_not_exists(gc_mark) OR gc_mark <> :run)"
    " AND (attribute_not_exists(used_ms) OR used_ms < :cutoff)"
)
# With --untagged: an untagged manifest goes only while neither written (a push or a tag
# write rewrites the item, pushed_ms) nor referenced (a new index's push stamps used_ms)
# since the cutoff. Items from before pushed_ms count as old.
MANIFEST_UNUSED_SINCE = (
    "attribute_exists(PK) AND (attribute_not_exists(pushed_ms) OR pushed_ms < :cutoff)"
    " AND (attribute_not_exists(used_ms) OR used_ms < :cutoff)"
)
# One run at a time: a new run replaces only a finished one (as read), or none.
NO_RUN_YET = "attribute_not_exists(PK)"
RUN_FINISHED_AS_READ = "run_id = :previous AND phase = :done"
# An unfinished run is continued by whoever finds its lease expired (or holds it).
RUN_LEASE_FREE = "run_id = :run AND (lease_until < :now OR lease_owner = :owner)"
# Progress is saved only by the lease holder: an invocation that overran its lease stops.
RUN_LEASE_HELD = "run_id = :run AND lease_owner = :owner"

DONE = "done"


class LeaseLost(Exception):
    """Another invocation took the run over (this one outlived its lease)."""


@dataclass
class RunState:
    """What is saved between invocations (the GC / RUN item)."""

    run_id: str
    started_ms: int
    grace_ms: int
    phase: str
    cursor: Any = None
    counters: dict[str, int] = field(default_factory=dict)
    untagged: bool = False
    finished_ms: int = 0

    @property
    def cutoff_ms(self) -> int:
        return self.started_ms - self.grace_ms


@dataclass(frozen=True, slots=True)
class LinkItem:
    repository: str
    digest: str
    size: int
    used_ms: int | None


@dataclass(frozen=True, slots=True)
class BlobItem:
    digest: str
    size: int
    key: str
    used_ms: int | None
    gc_mark: str | None


@dataclass(frozen=True, slots=True)
class ManifestBody:
    digest: str
    media_type: str
    body: bytes | None
    body_key: str | None
    size: int = 0
    subject: str | None = None
    pushed_ms: int | None = None
    used_ms: int | None = None


def _state(item: dict) -> RunState:
    cursor = get_str(item, "cursor")
    counters = get_str(item, "counters")
    return RunState(
        run_id=get_str(item, "run_id") or "",
        started_ms=get_int(item, "started_ms"),
        grace_ms=get_int(item, "grace_ms"),
        phase=get_str(item, "phase") or DONE,
        cursor=json.loads(cursor) if cursor else None,
        counters=json.loads(counters) if counters else {},
        untagged=bool(item.get("untagged", {}).get("BOOL")),
        finished_ms=get_int(item, "finished_ms"),
    )


def _used_ms(item: dict) -> int | None:
    return get_int(item, "used_ms") if "used_ms" in item else None


class DynamoGcStore:
    def __init__(
        self, client: Any, table: str, on_link_deleted: Callable[[str, str], None] | None = None
    ) -> None:
        self._table = Table(client, table)
        # Told of each link removed (repository, digest): where the collector runs in the
        # process that serves pulls, its blob cache forgets the link at once (blob_cache.py).
        self._on_link_deleted = on_link_deleted

    # --- the run item ---------------------------------------------------------------------

    def read_run(self) -> RunState | None:
        item = self._table.call(
            "get_item", TableName=self._table.name, Key=keys.gc_run(), ConsistentRead=True
        ).get("Item")
        return _state(item) if item else None

    def start_run(self, state: RunState, previous: RunState | None, owner: str, lease_until: int) -> bool:
        """Store a new run, leased to ``owner``, over ``previous`` (finished) or none."""
        lease = {"lease_owner": S(owner), "lease_until": N(lease_until)}
        item = {**keys.gc_run(), **self._attributes(state), **lease}
        if previous is None:
            ok, _, _ = conditional(lambda: self._table.put(item, NO_RUN_YET))
        else:
            values = {":previous": S(previous.run_id), ":done": S(DONE)}
            ok, _, _ = conditional(lambda: self._table.put(item, RUN_FINISHED_AS_READ, values))
        return ok

    def take_over(self, run_id: str, owner: str, now: int, lease_until: int) -> bool:
        """Lease the unfinished run ``run_id`` to ``owner`` (RUN_LEASE_FREE)."""
        ok, _, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.gc_run(),
                UpdateExpression="SET lease_owner = :owner, lease_until = :until",
                ConditionExpression=RUN_LEASE_FREE,
                ExpressionAttributeValues={
                    ":run": S(run_id),
                    ":now": N(now),
                    ":owner": S(owner),
                    ":until": N(lease_until),
                },
            )
        )
        return ok

    def save(self, state: RunState, owner: str, lease_until: int) -> None:
        """Save progress (RUN_LEASE_HELD); LeaseLost if another invocation took the run."""
        attributes = self._attributes(state)
        names = sorted(attributes)
        ok, _, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.gc_run(),
                UpdateExpression="SET "
                + ", ".join(f"#{name} = :{name}" for name in names)
                + ", lease_until = :until",
                ConditionExpression=RUN_LEASE_HELD,
                ExpressionAttributeNames={f"#{name}": name for name in names},
                ExpressionAttributeValues={
                    **{f":{name}": attributes[name] for name in names},
                    ":until": N(lease_until),
                    ":owner": S(owner),
                    ":run": S(state.run_id),
                },
            )
        )
        if not ok:
            raise LeaseLost(state.run_id)

    @staticmethod
    def _attributes(state: RunState) -> dict:
        return {
            "run_id": S(state.run_id),
            "started_ms": N(state.started_ms),
            "grace_ms": N(state.grace_ms),
            "phase": S(state.phase),
            "cursor": S(json.dumps(state.cursor)),
            "counters": S(json.dumps(state.counters, sort_keys=True)),
            "untagged": {"BOOL": state.untagged},
            "finished_ms": N(state.finished_ms),
        }

    # --- scans and queries ------------------------------------------------------------------

    def _scan_page(self, cursor: dict | None, limit: int, **kwargs: Any) -> tuple[list[dict], dict | None]:
        request: dict[str, Any] = {"TableName": self._table.name, "Limit": limit, "ConsistentRead": True}
        if cursor:
            request["ExclusiveStartKey"] = cursor
        page = self._table.call("scan", **request, **kwargs)
        return page.get("Items", []), page.get("LastEvaluatedKey")

    def link_page(self, cursor: dict | None, limit: int) -> tuple[list[LinkItem], dict | None]:
        """One page of a consistent Scan for the links (REPO#<name> / BLOB#<digest>):
        ``limit`` items read (the filter applies after), and the cursor to go on from."""
        items, cursor = self._scan_page(
            cursor,
            limit,
            FilterExpression="begins_with(PK, :repo) AND begins_with(SK, :blob)",
            ProjectionExpression="PK, SK, size_bytes, used_ms",
            ExpressionAttributeValues={":repo": S(keys.REPO_PREFIX), ":blob": S(keys.BLOB_PREFIX)},
        )
        links = [
            LinkItem(
                repository=item[keys.PK]["S"][len(keys.REPO_PREFIX) :],
                digest=item[keys.SK]["S"][len(keys.BLOB_PREFIX) :],
                size=get_int(item, "size_bytes"),
                used_ms=_used_ms(item),
            )
            for item in items
        ]
        return links, cursor

    def blob_page(self, cursor: dict | None, limit: int) -> tuple[list[BlobItem], dict | None]:
        """One page of a consistent Scan for the blobs (BLOB#<digest> / META)."""
        items, cursor = self._scan_page(
            cursor,
            limit,
            FilterExpression="begins_with(PK, :blob) AND SK = :meta",
            ProjectionExpression="digest, size_bytes, s3_key, used_ms, gc_mark",
            ExpressionAttributeValues={":blob": S(keys.BLOB_PREFIX), ":meta": S(keys.META)},
        )
        blobs = [
            BlobItem(
                digest=get_str(item, "digest") or "",
                size=get_int(item, "size_bytes"),
                key=get_str(item, "s3_key") or "",
                used_ms=_used_ms(item),
                gc_mark=get_str(item, "gc_mark"),
            )
            for item in items
        ]
        return blobs, cursor

    def manifests(self, repository: str) -> Iterator[ManifestBody]:
        """Every manifest of ``repository``: a consistent, paged Query."""
        for item in self._table.query(
            keys.repository_partition(repository),
            keys.MANIFEST_PREFIX,
            projection="digest, media_type, body_inline, body_key, size_bytes, subject, pushed_ms, used_ms",
            consistent=True,
        ):
            yield ManifestBody(
                digest=get_str(item, "digest") or "",
                media_type=get_str(item, "media_type") or "",
                body=get_bytes(item, "body_inline"),
                body_key=get_str(item, "body_key"),
                size=get_int(item, "size_bytes"),
                subject=get_str(item, "subject"),
                pushed_ms=get_int(item, "pushed_ms") if "pushed_ms" in item else None,
                used_ms=_used_ms(item),
            )

    def repository_page(self, after: str | None, limit: int) -> tuple[list[str], str | None]:
        """Repositories of the catalog, ``limit`` at a time after ``after``; and the last
        one returned, to go on from (None at the end)."""
        prefix = keys.REPO_PREFIX
        names = [
            item[keys.SK]["S"][len(prefix) :]
            for item in self._table.query(
                keys.CATALOG,
                prefix,
                limit=limit + 1,
                after=f"{prefix}{after}" if after is not None else None,
                projection="SK",
                consistent=True,
            )
        ]
        return names[:limit], names[limit - 1] if len(names) > limit else None

    def tagged(self, repository: str) -> set[str]:
        """The digests the repository's tags name (a consistent, paged Query)."""
        return {
            get_str(item, "digest") or ""
            for item in self._table.query(
                keys.repository_partition(repository), keys.TAG_PREFIX, projection="digest", consistent=True
            )
        }

    def upload_session_exists(self, upload_id: str) -> bool:
        item = self._table.call(
            "get_item",
            TableName=self._table.name,
            Key=keys.upload(upload_id),
            ConsistentRead=True,
            ProjectionExpression="PK",
        ).get("Item")
        return item is not None

    # --- conditional deletes and marks ----------------------------------------------------------

    def delete_link(self, repository: str, digest: str, cutoff_ms: int) -> bool:
        ok, _, _ = conditional(
            lambda: self._table.call(
                "delete_item",
                TableName=self._table.name,
                Key=keys.blob_link(repository, digest),
                ConditionExpression=LINK_UNUSED_SINCE,
                ExpressionAttributeValues={":cutoff": N(cutoff_ms)},
            )
        )
        if ok and self._on_link_deleted is not None:
            self._on_link_deleted(repository, digest)
        return ok

    def mark_blob(self, digest: str, run_id: str) -> bool:
        """gc_mark = run on the blob's META, if it exists (ITEM_EXISTS). No stream event
        comes of it (events come from REPO#/CATALOG items only)."""
        ok, _, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.blob(digest),
                UpdateExpression="SET gc_mark = :run",
                ConditionExpression=ITEM_EXISTS,
                ExpressionAttributeValues={":run": S(run_id)},
            )
        )
        return ok

    def delete_untagged_manifest(
        self, repository: str, digest: str, subject: str | None, cutoff_ms: int
    ) -> bool:
        """The manifest, under MANIFEST_UNUSED_SINCE, with its referrer entry; False when
        the condition failed (written or referenced since the cutoff) or it is gone. Its
        stream record is the usual manifest.deleted event."""
        deletes: list[dict] = [
            {
                "Delete": {
                    "TableName": self._table.name,
                    "Key": keys.manifest(repository, digest),
                    "ConditionExpression": MANIFEST_UNUSED_SINCE,
                    "ExpressionAttributeValues": {":cutoff": N(cutoff_ms)},
                }
            },
            # Its scan record goes with it, as in the manifest delete (there may be none).
            {"Delete": {"TableName": self._table.name, "Key": keys.scan_record(repository, digest)}},
        ]
        if subject:
            deletes.append(
                {"Delete": {"TableName": self._table.name, "Key": keys.referrer(repository, subject, digest)}}
            )
        try:
            self._table.transact(deletes)
        except ClientError as error:
            if "ConditionalCheckFailed" in getattr(error, "reasons", []):
                return False
            raise
        return True

    def delete_blob(self, digest: str, run_id: str, cutoff_ms: int) -> bool:
        ok, _, _ = conditional(
            lambda: self._table.call(
                "delete_item",
                TableName=self._table.name,
                Key=keys.blob(digest),
                ConditionExpression=BLOB_UNMARKED_AND_UNUSED,
                ExpressionAttributeValues={":run": S(run_id), ":cutoff": N(cutoff_ms)},
            )
        )
        return ok
