"""RegistryEvent.from_detail is the inverse of event_bus.detail: every sample registry event
(events/registry/) survives the trip through an EventBridge entry's Detail JSON, as the
replication and webhook queues receive it; a detail that is not one we wrote is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from skyport.event_bus import detail, entry
from skyport.events import RegistryEvent

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "events" / "registry").glob("*.json"))


def sample_events() -> list[RegistryEvent]:
    events = []
    for path in SAMPLES:
        for fields in json.loads(path.read_text()):
            events.append(RegistryEvent.from_dict(fields))
    return events


def test_samples_cover_every_event_type():
    assert {event.type for event in sample_events()} >= {
        "manifest.pushed",
        "manifest.deleted",
        "tag.created",
        "tag.moved",
        "tag.deleted",
        "repository.created",
    }


@pytest.mark.parametrize("event", sample_events(), ids=lambda event: f"{event.type}-{event.id}")
def test_every_sample_round_trips_through_the_entry_detail(event: RegistryEvent):
    carried = json.loads(entry(event, "bus")["Detail"])  # the JSON a queue message holds
    assert RegistryEvent.from_detail(carried) == event
    assert RegistryEvent.from_detail(carried).to_dict() == event.to_dict()


def _good() -> dict:
    return detail(next(event for event in sample_events() if event.type == "tag.moved"))


@pytest.mark.parametrize(
    "change",
    [
        {"event-type": "image.scanned"},
        {"event-type": None},
        {"event-id": ""},
        {"event-id": 7},
        {"repository-name": ["a"]},
        {"ordering-key": None},
        {"sequence-number": "12a"},
        {"sequence-number": "\u0661\u0662"},  # Arabic-Indic digits: isdigit() alone would take them
        {"sequence-number": 12},
        {"size": -1},
        {"size": "417"},
        {"size": True},
        {"image-tag": 5},
    ],
    ids=repr,
)
def test_a_detail_we_did_not_write_is_refused(change: dict):
    bad = {**_good(), **change}
    bad = {name: value for name, value in bad.items() if value is not None}
    with pytest.raises(ValueError):
        RegistryEvent.from_detail(bad)


@pytest.mark.parametrize("value", [None, [], "text", 3])
def test_a_detail_that_is_not_an_object_is_refused(value):
    with pytest.raises(ValueError):
        RegistryEvent.from_detail(value)


def test_seconds_since_the_stream_record():
    from datetime import UTC, datetime, timedelta

    event = sample_events()[0]
    moment = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    assert event.seconds_since(moment + timedelta(seconds=5.5)) == 5.5
    assert event.seconds_since(datetime(2000, 1, 1, tzinfo=UTC)) == 0.0  # never negative
    for time in ("", "yesterday", "2026-12-06T06:01:25"):  # unknown, unreadable, no zone
        assert RegistryEvent(**{**vars(event), "time": time}).seconds_since(moment) is None
