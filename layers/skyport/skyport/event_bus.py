"""Registry events onto an EventBridge bus (issue 11).

``EventBusPublisher.publish_records(records)`` converts a batch of the table's stream
records (``skyport.events.registry_events``) and sends their events with ``PutEvents``;
it returns which records were not fully published, so that the caller (the events
function) reports them as failures and the stream delivers them again.

Each registry event becomes one entry::

    Source        skyport.registry
    DetailType    one per event type (DETAIL_TYPES):
                  "Skyport Manifest Pushed", "Skyport Manifest Deleted",
                  "Skyport Tag Created", "Skyport Tag Moved", "Skyport Tag Deleted",
                  "Skyport Repository Created", "Skyport Repository Deleted",
                  "Skyport Scan Completed", "Skyport Scan Failed" (issue 14)
    Resources     []
    Detail        JSON, modelled on ECR's "ECR Image Action" detail, so rules written
                  for ECR adapt by changing source and detail-type:
      action-type          "PUSH" (pushed, created, moved) or "DELETE" (deleted)
      result               "SUCCESS" (only changes that were written become events)
      repository-name      the repository
      image-digest         the manifest's digest; for tag.deleted, the digest the tag named
      image-tag            the tag (tag events; manifest.pushed: the tag the push named)
      manifest-media-type  the manifest's media type (when known)
      artifact-media-type  its artifactType (when present)
      and our own fields:
      event-id             deterministic (skyport.events): consumers de-duplicate on it
      event-type           "manifest.pushed", "tag.moved", ... (skyport.events.EVENT_TYPES)
      event-time           the stream record's time, RFC 3339 ("" when unknown)
      ordering-key         events with the same key apply in sequence-number order
      sequence-number      the stream record's SequenceNumber (compare as integers)
      previous-digest      tag.moved and tag.deleted: the digest the tag named before
      size                 the manifest's size in bytes (when known)
      subject              the digest of the manifest's subject (when present)
      scan events (issue 14; image-digest is the scanned platform manifest):
      counts               scan.completed: findings by severity {"CRITICAL": 1, ...}
      report-digest        scan.completed: the report artifact's manifest digest
      sbom-digest          scan.completed: the SBOM artifact's manifest digest
      new-findings         scan.completed of a re-scan: the ids the previous report had not
      error                scan.failed: why, for a person

Fields that do not apply are left out. The registry event itself
(``RegistryEvent.to_dict()``, events/registry/) carries the same facts in camelCase.

Limits (EventBridge "PutEvents"): at most 10 entries per call, and at most 256 KB per
call, where an entry's size is the UTF-8 length of Source, DetailType, Detail and each
Resource, plus 14 bytes when Time is given (we give none: the bus stamps it, and the
record's time travels as event-time). An entry bigger than that alone is never sent:
it fails, and its record with it.

Failures are never dropped. PutEvents answers per entry (FailedEntryCount, an ErrorCode
on each failed entry) or fails as a whole (a missing bus, throttling after the SDK's
retries, no network). A record is published when every one of its events is; the
first record that is not, and every record after it, are reported failed, because the
stream's order per item matters and Lambda retries a stream batch from its lowest
failed sequence number anyway (Lambda guide, "Configuring partial batch response with
DynamoDB and Lambda"). Once a call fails nothing more is sent in that invocation, so
later events do not overtake the failed ones more than one call's worth; events of
that call that did arrive arrive again on retry, with the same event-id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .events import (
    MANIFEST_DELETED,
    MANIFEST_PUSHED,
    REPOSITORY_CREATED,
    REPOSITORY_DELETED,
    SCAN_COMPLETED,
    SCAN_FAILED,
    TAG_CREATED,
    TAG_DELETED,
    TAG_MOVED,
    RegistryEvent,
    registry_events,
)

log = logging.getLogger(__name__)

SOURCE = "skyport.registry"
DETAIL_TYPES = {
    MANIFEST_PUSHED: "Skyport Manifest Pushed",
    MANIFEST_DELETED: "Skyport Manifest Deleted",
    TAG_CREATED: "Skyport Tag Created",
    TAG_MOVED: "Skyport Tag Moved",
    TAG_DELETED: "Skyport Tag Deleted",
    REPOSITORY_CREATED: "Skyport Repository Created",
    REPOSITORY_DELETED: "Skyport Repository Deleted",
    SCAN_COMPLETED: "Skyport Scan Completed",
    SCAN_FAILED: "Skyport Scan Failed",
}
_DELETIONS = (MANIFEST_DELETED, TAG_DELETED, REPOSITORY_DELETED)

# EventBridge quotas, "PutEvents": entries per request and bytes per request.
MAX_ENTRIES_PER_CALL = 10
MAX_BYTES_PER_CALL = 256 * 1024


def detail(event: RegistryEvent) -> dict[str, Any]:
    """The entry's Detail (module docstring), absent fields left out."""
    image_digest = event.digest if event.type != TAG_DELETED else event.previous_digest
    image_tag = event.tag if event.tag is not None else (event.tags[0] if event.tags else None)
    fields = {
        "action-type": "DELETE" if event.type in _DELETIONS else "PUSH",
        "result": "SUCCESS",
        "repository-name": event.repository,
        "image-digest": image_digest,
        "image-tag": image_tag,
        "manifest-media-type": event.media_type,
        "artifact-media-type": event.artifact_type,
        "event-id": event.id,
        "event-type": event.type,
        "event-time": event.time,
        "ordering-key": event.ordering_key,
        "sequence-number": event.sequence_number,
        "previous-digest": event.previous_digest,
        "size": event.size,
        "subject": event.subject,
        "counts": event.counts,
        "report-digest": event.report_digest,
        "sbom-digest": event.sbom_digest,
        "new-findings": list(event.new_findings) if event.new_findings is not None else None,
        "error": event.error,
    }
    return {name: value for name, value in fields.items() if value is not None}


def entry(event: RegistryEvent, bus: str) -> dict[str, Any]:
    """One PutEvents request entry for one registry event."""
    return {
        "EventBusName": bus,
        "Source": SOURCE,
        "DetailType": DETAIL_TYPES[event.type],
        "Detail": json.dumps(detail(event), separators=(",", ":"), ensure_ascii=False),
        "Resources": [],
    }


def entry_size(request_entry: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge counts it against the 256 KB per call
    ("Calculating PutEvents event entry size"). EventBusName is not counted."""
    size = 14 if request_entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(request_entry.get(name) or "").encode("utf-8"))
    return size + sum(len(resource.encode("utf-8")) for resource in request_entry.get("Resources") or ())


@dataclass(frozen=True)
class Failure:
    """An event that was not published, and why (an ErrorCode and message, or the
    exception the call raised). Logged by the caller; never holds secrets: events carry
    repository names, tags and digests only."""

    event: RegistryEvent
    reason: str


@dataclass(frozen=True)
class Outcome:
    """What ``publish_records`` did: ``failed_records`` are the indexes (in the batch) of
    the records to report failed, the first record with an unpublished event and every
    record after it; ``failures`` say why; ``published`` counts the entries EventBridge
    accepted."""

    failed_records: tuple[int, ...]
    failures: tuple[Failure, ...]
    published: int


def _calls(entries: list[dict[str, Any]]) -> Iterator[list[int]]:
    """Indexes of ``entries`` grouped into PutEvents calls, in order: at most 10 entries
    and 256 KB each. An entry too big on its own gets a call of its own (never sent)."""
    call: list[int] = []
    size = 0
    for index, request_entry in enumerate(entries):
        entry_bytes = entry_size(request_entry)
        if call and (len(call) == MAX_ENTRIES_PER_CALL or size + entry_bytes > MAX_BYTES_PER_CALL):
            yield call
            call, size = [], 0
        call.append(index)
        size += entry_bytes
    if call:
        yield call


class EventBusPublisher:
    def __init__(self, clients: Any, bus: str) -> None:
        """``clients``: what holds the boto3 ``events`` client (AwsClients, which creates
        it on first use, not here: the events function builds this in its init phase);
        ``bus``: the bus's name or ARN."""
        self._clients = clients
        self._bus = bus

    @property
    def client(self) -> Any:
        return self._clients.events

    def publish_records(self, records: Sequence[Mapping]) -> Outcome:
        """Publish the registry events of a batch of stream records, in record order."""
        owners: list[int] = []  # the record index of each event
        events: list[RegistryEvent] = []
        for record_index, record in enumerate(records):
            for event in registry_events(record):
                owners.append(record_index)
                events.append(event)
        failed, published = self.publish(events)
        if not failed:
            return Outcome(failed_records=(), failures=(), published=published)
        first = min(owners[index] for index, _ in failed)
        failures = tuple(Failure(events[index], reason) for index, reason in failed)
        return Outcome(
            failed_records=tuple(range(first, len(records))), failures=failures, published=published
        )

    def publish(self, events: Sequence[RegistryEvent]) -> tuple[list[tuple[int, str]], int]:
        """Send ``events`` in calls of at most 10 entries and 256 KB. Returns the indexes
        of the events not published, with the reason, and how many were. After a call with
        a failure nothing more is sent: every later event counts as not published."""
        entries = [entry(event, self._bus) for event in events]
        failed: list[tuple[int, str]] = []
        published = 0
        calls = list(_calls(entries))
        for number, call in enumerate(calls):
            failed = self._send(entries, call)
            published += len(call) - len(failed)
            if failed:
                not_sent = [index for later in calls[number + 1 :] for index in later]
                failed += [(index, "not sent: an earlier entry of the batch failed") for index in not_sent]
                break
        return failed, published

    def _send(self, entries: list[dict[str, Any]], call: list[int]) -> list[tuple[int, str]]:
        """One PutEvents call; the indexes that failed, with the reason."""
        if len(call) == 1 and entry_size(entries[call[0]]) > MAX_BYTES_PER_CALL:
            size = entry_size(entries[call[0]])
            return [(call[0], f"entry of {size} bytes exceeds PutEvents' {MAX_BYTES_PER_CALL}")]
        from botocore.exceptions import BotoCoreError, ClientError  # deferred with boto3 (clients.py)

        try:
            response = self.client.put_events(Entries=[entries[index] for index in call])
        except (ClientError, BotoCoreError) as error:
            return [(index, f"PutEvents failed: {error}") for index in call]
        results = response.get("Entries") or []
        if len(results) != len(call):  # the API answers one result per entry, in order
            return [(index, "PutEvents answered a different number of entries") for index in call]
        if not response.get("FailedEntryCount"):
            return []
        return [
            (index, f"{result.get('ErrorCode')}: {result.get('ErrorMessage', '')}")
            for index, result in zip(call, results, strict=True)
            if result.get("ErrorCode") or not result.get("EventId")
        ]
