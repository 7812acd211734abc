"""scan.completed and scan.failed (issue 14) from the scan record's stream records
(skyport.events: one source item per event), in the shape the events function publishes
(skyport.event_bus) and the queues' consumers read back (RegistryEvent.from_detail)."""

from __future__ import annotations

import pytest
from skyport.event_bus import DETAIL_TYPES, detail, entry
from skyport.events import (
    EVENT_TYPES,
    SCAN_COMPLETED,
    SCAN_FAILED,
    RegistryEvent,
    registry_events,
)
from skyport.storage import keys
from skyport.webhooks import envelope_event

DIGEST = "sha256:" + "ab" * 32
REPORT = "sha256:" + "cd" * 32
SBOM = "sha256:" + "ef" * 32


def record(name: str, new: dict | None, old: dict | None, event_id: str = "e1") -> dict:
    change: dict = {"Keys": keys.scan_record("team/app", DIGEST), "SequenceNumber": "100"}
    change["ApproximateCreationDateTime"] = 1765000000
    if new is not None:
        change["NewImage"] = {**keys.scan_record("team/app", DIGEST), **new}
    if old is not None:
        change["OldImage"] = {**keys.scan_record("team/app", DIGEST), **old}
    return {"eventID": event_id, "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": change}


SCANNING = {"scan_status": {"S": "scanning"}, "lease_owner": {"S": "x"}, "lease_until": {"N": "5"}}
COMPLETE = {
    "scan_status": {"S": "complete"},
    "report_digest": {"S": REPORT},
    "sbom_digest": {"S": SBOM},
    "counts": {"M": {"CRITICAL": {"N": "1"}, "HIGH": {"N": "2"}, "LOW": {"N": "0"}}},
}


def test_the_end_of_a_scan_is_scan_completed_with_counts_and_digests():
    (event,) = registry_events(record("MODIFY", COMPLETE, SCANNING))
    assert event.type == SCAN_COMPLETED and event.id == "e1-0"
    assert (event.repository, event.digest) == ("team/app", DIGEST)
    assert event.counts == {"CRITICAL": 1, "HIGH": 2, "LOW": 0}
    assert (event.report_digest, event.sbom_digest, event.new_findings) == (REPORT, SBOM, None)
    assert event.ordering_key == f"team/app@{DIGEST}#scan"
    assert event.time == "2025-12-06T05:46:40Z"


def test_a_rescan_names_the_new_findings():
    rescanned = {
        **COMPLETE,
        "rescan": {"BOOL": True},
        "new_findings": {"L": [{"S": "GHSA-1"}, {"S": "CVE-2"}]},
    }
    (event,) = registry_events(record("MODIFY", rescanned, {**SCANNING, **COMPLETE, **SCANNING}))
    assert event.new_findings == ("GHSA-1", "CVE-2")


def test_a_failed_scan_is_scan_failed_with_the_reason():
    failed = {"scan_status": {"S": "failed"}, "error": {"S": "BlobUnknown: layer gone"}}
    (event,) = registry_events(record("MODIFY", failed, SCANNING))
    assert event.type == SCAN_FAILED and event.error == "BlobUnknown: layer gone" and event.counts is None


@pytest.mark.parametrize(
    ("name", "new", "old"),
    [
        ("MODIFY", SCANNING, COMPLETE),  # a re-scan takes the lease: nothing yet
        ("INSERT", SCANNING, None),  # a first scan takes the lease
        ("MODIFY", COMPLETE, COMPLETE),  # a write that changes no status (a redelivery)
        ("REMOVE", None, COMPLETE),  # the record goes with its manifest: manifest.deleted says it
        ("MODIFY", {"scan_status": {"S": "odd"}}, SCANNING),
        ("MODIFY", {}, SCANNING),
    ],
)
def test_other_writes_of_the_record_are_no_event(name, new, old):
    assert registry_events(record(name, new, old)) == []


def test_odd_counts_are_left_out_not_raised():
    odd = {**COMPLETE, "counts": {"M": {"HIGH": {"N": "-1"}, "LOW": {"S": "3"}, "CRITICAL": {"N": "2"}}}}
    (event,) = registry_events(record("MODIFY", odd, SCANNING))
    assert event.counts == {"CRITICAL": 2}


def test_the_detail_and_back():
    for draft in (COMPLETE, {**COMPLETE, "rescan": {"BOOL": True}, "new_findings": {"L": [{"S": "X-1"}]}}):
        (event,) = registry_events(record("MODIFY", draft, SCANNING))
        assert RegistryEvent.from_detail(detail(event)) == event
        assert RegistryEvent.from_dict(event.to_dict()) == event
    (failed,) = registry_events(
        record("MODIFY", {"scan_status": {"S": "failed"}, "error": {"S": "e"}}, SCANNING)
    )
    assert RegistryEvent.from_detail(detail(failed)) == failed
    assert entry(failed, "bus")["DetailType"] == DETAIL_TYPES[SCAN_FAILED] == "Skyport Scan Failed"
    assert {SCAN_COMPLETED, SCAN_FAILED} <= set(EVENT_TYPES) and set(DETAIL_TYPES) == set(EVENT_TYPES)
    # Webhooks take them like any event (a subscription to scan.* gets them).
    assert envelope_event(failed, None, 0)["skyport"]["eventType"] == SCAN_FAILED


@pytest.mark.parametrize(
    "bad",
    [
        {"counts": {"HIGH": "1"}},
        {"counts": {"HIGH": -1}},
        {"counts": ["HIGH"]},
        {"counts": {"HIGH": True}},
        {"new-findings": "GHSA-1"},
        {"new-findings": [1]},
        {"report-digest": 5},
        {"error": ["x"]},
    ],
)
def test_a_detail_we_did_not_write_is_refused(bad):
    (event,) = registry_events(record("MODIFY", COMPLETE, SCANNING))
    with pytest.raises(ValueError):
        RegistryEvent.from_detail({**detail(event), **bad})
