"""Registry events from the metadata table's DynamoDB stream (issue 11).

The table's stream (StreamViewType NEW_AND_OLD_IMAGES, template.yaml) sees every write.
``registry_events(record)`` turns one stream record, in the shape Lambda delivers it (and
``dynamodbstreams.get_records`` returns it), into zero or more ``RegistryEvent``:

==================== ===================================== ======================================
type                 source item and change                fields besides the common ones
==================== ===================================== ======================================
manifest.pushed      REPO#<name> / MANIFEST#<digest>        digest, mediaType, size, tags,
                     INSERT                                 artifactType, subject (when present)
manifest.deleted     same item, REMOVE                      digest, mediaType, size,
                                                            artifactType, subject (when present)
tag.created          REPO#<name> / TAG#<tag> INSERT         tag, digest, mediaType, size
tag.moved            same item, MODIFY to another digest    tag, digest, previousDigest,
                                                            mediaType, size
tag.deleted          same item, REMOVE                      tag, previousDigest (the digest it
                                                            named)
repository.created   CATALOG / REPO#<name> INSERT           -
repository.deleted   same item, REMOVE                      -
scan.completed       REPO#<name> / SCAN#<digest> written    digest, counts (by severity),
                     with scan_status complete, from        reportDigest, sbomDigest; on a
                     another status (issue 14)              re-scan newFindings (ids the previous
                                                            report had not)
scan.failed          same item, written with scan_status    digest, error
                     failed, from another status
==================== ===================================== ======================================

artifactType is the manifest's as the referrers API lists it: its own artifactType, or for
an OCI image manifest without one, its config's media type (distribution-spec, "Listing
Referrers"); subject is the digest of the manifest's subject.

Common fields (``RegistryEvent.to_dict``, JSON, camelCase, absent fields left out)::

    {"id": "<stream eventID>-<index>", "type": "tag.moved", "time": "2026-12-06T05:58:11Z",
     "repository": "library/app", "orderingKey": "library/app:latest",
     "sequenceNumber": "1100000000017454423010", ...the type's fields}

Why each event has exactly one source item, so nothing is reported twice:

- A push writes, in one transaction, the MANIFEST item, the CATALOG entry, the TAG item
  when pushed by tag (a copy of the manifest item, so GET by tag is one read) and a
  REFERRER item when the manifest has a subject (storage/dynamodb/manifests.py). The
  manifest is reported from its MANIFEST item, the tag from its TAG item, the repository
  from its CATALOG entry; REFERRER items only index the subject, which manifest.pushed
  already carries, and yield nothing.
- So a push by tag gives manifest.pushed and tag.created (with the digest, media type
  and size). manifest.pushed's ``tags`` is the tag the push named (the MANIFEST item keeps
  it as ``pushed_with_tag``), ``[]`` for a push by digest: a tag added later by pushing
  the same manifest again is a tag.created only (the MANIFEST item changes, a MODIFY,
  which is no event).
- Pushing the same manifest again rewrites the same items unchanged. DynamoDB is known
  to write no stream record for a put that changes nothing (not re-checked against the
  guide for this slice); moto writes a MODIFY whose images are equal. Either way, a
  MODIFY of a MANIFEST or CATALOG item, or of a TAG item that still names the same
  digest, is no event.
- Deleting a manifest deletes the tags that point at it in the same transaction
  (distribution-spec "Deleting Manifests"): manifest.deleted, and tag.deleted for each tag.
  Deleting a repository's last manifest then removes its CATALOG entry
  (``forget_repository_if_empty``): repository.deleted.
- A scan (skyport/scanning/service.py) writes its record three times or so: the lease
  (status scanning: no event), then its outcome (complete or failed: one event). Only a
  write that changes the status to complete or failed is an event, so a redelivered
  record or the next lease yields nothing twice; the record's removal (it goes with its
  manifest) is none. ``orderingKey`` is ``<repository>@<digest>#scan``.
- Blob links (REPO#<name> / BLOB#<digest>), blobs, uploads, identities, grants, lockouts and
  auth keys are not registry content here and yield nothing; ``EVENT_SOURCE_FILTER`` keeps
  them from invoking the events function at all.

Ids: DynamoDB gives each stream record an eventID that a redelivery (a Lambda retry, a
replayed shard) keeps; the event's id is that eventID and the event's index within the
record, so converting the same record again yields the same ids, and consumers
de-duplicate on them.

Order: DynamoDB Streams orders the records of one item (one primary key), not across
items (DynamoDB developer guide, "Change Data Capture for DynamoDB Streams").
``orderingKey`` names the item: ``<repository>:<tag>`` for tag events,
``<repository>@<digest>`` for manifest events and ``<repository>`` for repository events;
events with the same orderingKey are to be applied in sequenceNumber order (compared as
integers: they are decimal strings of varying length). ``time`` is "" when the record
carries no readable ApproximateCreationDateTime.

Stream records are input the table wrote, but the function stays total: a record it cannot
read yields nothing (a key of another shape, a tag image without a digest) or an event
without the fields it could not read (a manifest image without a size), never an
exception, so one odd record never blocks a shard.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .storage import keys

MANIFEST_PUSHED = "manifest.pushed"
MANIFEST_DELETED = "manifest.deleted"
TAG_CREATED = "tag.created"
TAG_MOVED = "tag.moved"
TAG_DELETED = "tag.deleted"
REPOSITORY_CREATED = "repository.created"
REPOSITORY_DELETED = "repository.deleted"
SCAN_COMPLETED = "scan.completed"  # issue 14
SCAN_FAILED = "scan.failed"

EVENT_TYPES = (
    MANIFEST_PUSHED,
    MANIFEST_DELETED,
    TAG_CREATED,
    TAG_MOVED,
    TAG_DELETED,
    REPOSITORY_CREATED,
    REPOSITORY_DELETED,
    SCAN_COMPLETED,
    SCAN_FAILED,
)
SCAN_EVENTS = (SCAN_COMPLETED, SCAN_FAILED)
# The scan record's statuses that end a scan (storage/dynamodb/scans.py), and their events.
_SCAN_OUTCOMES = {"complete": SCAN_COMPLETED, "failed": SCAN_FAILED}

INSERT, MODIFY, REMOVE = "INSERT", "MODIFY", "REMOVE"

# The items that are registry content, as a Lambda event source mapping's FilterCriteria
# (Lambda "event filtering": up to five filters by default, ORed; each pattern's keys ANDed;
# "prefix" matches the start of a string; a pattern is at most 4,096 characters). With it,
# identity, grant, lockout, auth, upload, open-upload and blob items, blob links and
# referrer index items never invoke the events function (nor cost an invocation).
# ``is_registry_item`` is the same test in Python; tests/events proves they agree.
_MANIFEST_OR_TAG_PATTERN = {
    "dynamodb": {
        "Keys": {
            "PK": {"S": [{"prefix": keys.REPO_PREFIX}]},
            "SK": {
                "S": [
                    {"prefix": keys.MANIFEST_PREFIX},
                    {"prefix": keys.TAG_PREFIX},
                    {"prefix": keys.SCAN_PREFIX},
                ]
            },
        }
    }
}
_CATALOG_PATTERN = {
    "dynamodb": {"Keys": {"PK": {"S": [keys.CATALOG]}, "SK": {"S": [{"prefix": keys.REPO_PREFIX}]}}}
}
EVENT_SOURCE_FILTER = {
    "Filters": [
        {"Pattern": json.dumps(_MANIFEST_OR_TAG_PATTERN, separators=(",", ":"))},
        {"Pattern": json.dumps(_CATALOG_PATTERN, separators=(",", ":"))},
    ]
}


@dataclass(frozen=True)
class RegistryEvent:
    id: str
    type: str
    time: str
    repository: str
    ordering_key: str
    sequence_number: str
    digest: str | None = None
    previous_digest: str | None = None
    media_type: str | None = None
    size: int | None = None
    tag: str | None = None
    artifact_type: str | None = None
    subject: str | None = None
    tags: tuple[str, ...] | None = None  # manifest.pushed only
    # scan.completed and scan.failed (issue 14)
    counts: dict[str, int] | None = None
    report_digest: str | None = None
    sbom_digest: str | None = None
    new_findings: tuple[str, ...] | None = None  # a re-scan's newly found ids
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape (module docstring): camelCase, absent fields left out."""
        fields = {
            "id": self.id,
            "type": self.type,
            "time": self.time,
            "repository": self.repository,
            "orderingKey": self.ordering_key,
            "sequenceNumber": self.sequence_number,
            "tag": self.tag,
            "digest": self.digest,
            "previousDigest": self.previous_digest,
            "mediaType": self.media_type,
            "size": self.size,
            "artifactType": self.artifact_type,
            "subject": self.subject,
            "tags": list(self.tags) if self.tags is not None else None,
            "counts": dict(self.counts) if self.counts is not None else None,
            "reportDigest": self.report_digest,
            "sbomDigest": self.sbom_digest,
            "newFindings": list(self.new_findings) if self.new_findings is not None else None,
            "error": self.error,
        }
        return {name: value for name, value in fields.items() if value is not None}

    def seconds_since(self, now: datetime) -> float | None:
        """Seconds from the event's stream record (``time``) to ``now``, never negative;
        None when the event carries no readable time. The hooks' lag metrics."""
        try:
            moment = datetime.fromisoformat(self.time.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None
        return max((now - moment).total_seconds(), 0.0)

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> RegistryEvent:
        """The inverse of ``to_dict``: an event from its documented JSON (events/registry/).
        For our own files and tests; a queue's input is read by ``from_detail``."""
        names = {
            "orderingKey": "ordering_key",
            "sequenceNumber": "sequence_number",
            "previousDigest": "previous_digest",
            "mediaType": "media_type",
            "artifactType": "artifact_type",
            "reportDigest": "report_digest",
            "sbomDigest": "sbom_digest",
            "newFindings": "new_findings",
        }
        values = {names.get(name, name): value for name, value in fields.items()}
        for name in ("tags", "new_findings"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def from_detail(cls, detail: Any) -> RegistryEvent:
        """The event an EventBridge entry's ``detail`` carries: the inverse of
        ``skyport.event_bus.detail`` (its docstring names the fields).

        The detail arrives from a queue message, so it is read as untrusted input: a
        missing or mistyped field, or an unknown event type, raises ValueError (the
        consumer parks such a message, it never retries it)."""
        if not isinstance(detail, Mapping):
            raise ValueError("detail is not a JSON object")

        def text(name: str, required: bool = True) -> str | None:
            value = detail.get(name)
            if value is None and not required:
                return None
            if not isinstance(value, str) or (required and name != "event-time" and not value):
                raise ValueError(f"detail field {name!r} is missing or not a string")
            return value

        kind = text("event-type")
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown event-type {kind!r}")
        size = detail.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ValueError("detail field 'size' is not a non-negative integer")
        sequence_number = text("sequence-number")
        if not (sequence_number.isascii() and sequence_number.isdigit()):  # type: ignore[union-attr]
            raise ValueError("detail field 'sequence-number' is not a decimal number")
        # event_bus.detail puts the digest a deleted tag named in image-digest too.
        digest = text("image-digest", required=False) if kind != TAG_DELETED else None
        # image-tag is a tag event's tag, or the tag a manifest.pushed named (its tags).
        image_tag = text("image-tag", required=False)
        is_tag_event = kind in (TAG_CREATED, TAG_MOVED, TAG_DELETED)
        scan = _scan_detail(detail) if kind in SCAN_EVENTS else {}
        return cls(
            id=text("event-id"),  # type: ignore[arg-type]
            type=kind,  # type: ignore[arg-type]
            time=text("event-time"),  # type: ignore[arg-type]
            repository=text("repository-name"),  # type: ignore[arg-type]
            ordering_key=text("ordering-key"),  # type: ignore[arg-type]
            sequence_number=sequence_number,  # type: ignore[arg-type]
            digest=digest,
            previous_digest=text("previous-digest", required=False),
            media_type=text("manifest-media-type", required=False),
            size=size,
            tag=image_tag if is_tag_event else None,
            artifact_type=text("artifact-media-type", required=False),
            subject=text("subject", required=False),
            tags=((image_tag,) if image_tag else ()) if kind == MANIFEST_PUSHED else None,
            **scan,
        )


def _scan_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    """A scan event's own fields from an EventBridge detail (event_bus.detail), read as
    untrusted: ValueError for a field of the wrong type."""
    counts = detail.get("counts")
    if counts is not None and not (
        isinstance(counts, Mapping)
        and all(
            isinstance(name, str) and isinstance(number, int) and not isinstance(number, bool) and number >= 0
            for name, number in counts.items()
        )
    ):
        raise ValueError("detail field 'counts' is not a map of severities to counts")
    new_findings = detail.get("new-findings")
    if new_findings is not None and not (
        isinstance(new_findings, list) and all(isinstance(item, str) for item in new_findings)
    ):
        raise ValueError("detail field 'new-findings' is not a list of ids")
    texts = {}
    for name, attribute in (
        ("report-digest", "report_digest"),
        ("sbom-digest", "sbom_digest"),
        ("error", "error"),
    ):
        value = detail.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"detail field {name!r} is not a string")
        texts[attribute] = value
    return {
        "counts": dict(counts) if counts is not None else None,
        "new_findings": tuple(new_findings) if new_findings is not None else None,
        **texts,
    }


# --- reading a stream record ------------------------------------------------------------


def _attribute(image: Any, name: str, kind: str) -> Any:
    """One attribute of an item image in DynamoDB JSON ({"S": "..."}), or None."""
    value = image.get(name) if isinstance(image, Mapping) else None
    return value.get(kind) if isinstance(value, Mapping) else None


def _string(image: Any, name: str) -> str | None:
    value = _attribute(image, name, "S")
    return value if isinstance(value, str) else None


def _number(image: Any, name: str) -> int | None:
    value = _attribute(image, name, "N")
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None  # sizes are non-negative integers; anything else is not one we wrote
    return int(value)


def _time(record: Mapping) -> str:
    """ApproximateCreationDateTime as RFC 3339 UTC, "" when unreadable. Lambda delivers epoch
    seconds; boto3's get_records parses them into a datetime."""
    value = _attribute(record, "dynamodb", "ApproximateCreationDateTime")
    try:
        if isinstance(value, datetime):
            moment = value.astimezone(UTC)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str) and value.isascii():  # the Lambda guide's samples quote it
            moment = datetime.fromtimestamp(float(value), UTC)
        else:
            return ""
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _pushed_tags(image: Any) -> tuple[str, ...]:
    tag = _string(image, "pushed_with_tag")
    return (tag,) if tag else ()


def is_registry_item(record_keys: Any) -> bool:
    """Whether a stream record's Keys name registry content: what EVENT_SOURCE_FILTER lets
    through."""
    pk, sk = _string(record_keys, keys.PK), _string(record_keys, keys.SK)
    if pk is None or sk is None:
        return False
    if pk.startswith(keys.REPO_PREFIX):
        return sk.startswith((keys.MANIFEST_PREFIX, keys.TAG_PREFIX, keys.SCAN_PREFIX))
    return pk == keys.CATALOG and sk.startswith(keys.REPO_PREFIX)


def registry_events(record: Mapping) -> list[RegistryEvent]:
    """The registry events one stream record stands for (module docstring), in order.

    Reads the view type NEW_AND_OLD_IMAGES (template.yaml): a tag's move is told from the
    digests in the old and new images."""
    change = record.get("dynamodb") if isinstance(record, Mapping) else None
    if not isinstance(change, Mapping):
        return []
    record_keys = change.get("Keys")
    name = record.get("eventName")
    event_id = record.get("eventID")
    pk, sk = _string(record_keys, keys.PK), _string(record_keys, keys.SK)
    if pk is None or sk is None or not is_registry_item(record_keys):
        return []
    if name not in (INSERT, MODIFY, REMOVE) or not isinstance(event_id, str) or not event_id:
        return []
    new, old = change.get("NewImage"), change.get("OldImage")
    sequence_number = change.get("SequenceNumber")
    common = {
        "time": _time(record),
        "sequence_number": sequence_number if isinstance(sequence_number, str) else "",
    }
    drafts: list[dict[str, Any]] = []

    if pk == keys.CATALOG:
        repository = sk.removeprefix(keys.REPO_PREFIX)
        kind = {INSERT: REPOSITORY_CREATED, REMOVE: REPOSITORY_DELETED}.get(name)
        if kind:
            drafts.append({"type": kind, "repository": repository, "ordering_key": repository})
    elif sk.startswith(keys.SCAN_PREFIX):
        scan_event = _scan_event(
            pk.removeprefix(keys.REPO_PREFIX), sk.removeprefix(keys.SCAN_PREFIX), name, new, old
        )
        if scan_event:
            drafts.append(scan_event)
    else:
        repository = pk.removeprefix(keys.REPO_PREFIX)
        if sk.startswith(keys.MANIFEST_PREFIX):
            digest = sk.removeprefix(keys.MANIFEST_PREFIX)
            image = new if name == INSERT else old
            kind = {INSERT: MANIFEST_PUSHED, REMOVE: MANIFEST_DELETED}.get(name)
            if kind:
                drafts.append(
                    {
                        "type": kind,
                        "repository": repository,
                        "ordering_key": f"{repository}@{digest}",
                        "digest": digest,
                        "media_type": _string(image, "media_type"),
                        "size": _number(image, "size_bytes"),
                        "artifact_type": _string(image, "artifact_type"),
                        "subject": _string(image, "subject"),
                        **({"tags": _pushed_tags(image)} if kind == MANIFEST_PUSHED else {}),
                    }
                )
        else:
            tag = sk.removeprefix(keys.TAG_PREFIX)
            tagged = {"repository": repository, "ordering_key": f"{repository}:{tag}", "tag": tag}
            new_digest, old_digest = _string(new, "digest"), _string(old, "digest")
            if name == INSERT and new_digest:
                drafts.append(
                    {
                        "type": TAG_CREATED,
                        **tagged,
                        "digest": new_digest,
                        "media_type": _string(new, "media_type"),
                        "size": _number(new, "size_bytes"),
                    }
                )
            elif name == MODIFY and new_digest and new_digest != old_digest:
                drafts.append(
                    {
                        "type": TAG_MOVED,
                        **tagged,
                        "digest": new_digest,
                        "previous_digest": old_digest,
                        "media_type": _string(new, "media_type"),
                        "size": _number(new, "size_bytes"),
                    }
                )
            elif name == REMOVE:
                drafts.append({"type": TAG_DELETED, **tagged, "previous_digest": old_digest})

    return [RegistryEvent(id=f"{event_id}-{index}", **common, **draft) for index, draft in enumerate(drafts)]


def _scan_event(repository: str, digest: str, name: str, new: Any, old: Any) -> dict[str, Any] | None:
    """scan.completed or scan.failed from a write of a scan record that ended a scan
    (module docstring); None for any other write."""
    status = _string(new, "scan_status") if name in (INSERT, MODIFY) else None
    kind = _SCAN_OUTCOMES.get(status or "")
    if kind is None or _string(old, "scan_status") == status:
        return None
    draft: dict[str, Any] = {
        "type": kind,
        "repository": repository,
        "ordering_key": f"{repository}@{digest}#scan",
        "digest": digest,
    }
    if kind == SCAN_FAILED:
        draft["error"] = _string(new, "error") or ""
        return draft
    counts = _attribute(new, "counts", "M")
    draft["counts"] = {
        severity: number
        for severity, value in (counts.items() if isinstance(counts, Mapping) else ())
        if isinstance(severity, str) and (number := _number({"n": value}, "n")) is not None
    }
    draft["report_digest"] = _string(new, "report_digest")
    draft["sbom_digest"] = _string(new, "sbom_digest")
    found = _attribute(new, "new_findings", "L")
    if _attribute(new, "rescan", "BOOL") is True and isinstance(found, list):
        draft["new_findings"] = tuple(
            item["S"] for item in found if isinstance(item, Mapping) and isinstance(item.get("S"), str)
        )
    return draft


def record_as_json(record: Mapping) -> dict:
    """A record as boto3's get_records returns it, in the JSON shape Lambda delivers it:
    ApproximateCreationDateTime in epoch seconds, binary attributes in base64. For the
    local pipeline and the sample records (events/stream)."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, datetime):
            return int(value.timestamp())
        if isinstance(value, Mapping):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    return plain(record)
