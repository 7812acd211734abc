"""registry_events is total: a record of any shape yields events or nothing, never an
exception (one odd record must not block a shard: Lambda would retry it forever)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from skyport.events import registry_events

SAMPLES = Path(__file__).resolve().parents[2] / "events" / "stream"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = [
    "eventID",
    "eventName",
    "dynamodb",
    "Keys",
    "NewImage",
    "OldImage",
    "SequenceNumber",
    "ApproximateCreationDateTime",
    "PK",
    "SK",
    "S",
    "N",
    "digest",
    "size_bytes",
    "media_type",
]


def _sample_records() -> list[dict]:
    return [json.loads(path.read_text())["Records"][0] for path in sorted(SAMPLES.glob("*.json"))]


def _replace_at(value, path: list[str], replacement):
    """``value`` with the node at ``path`` (keys, followed while they exist) replaced."""
    if not path or not isinstance(value, dict) or path[0] not in value:
        return replacement
    return {**value, path[0]: _replace_at(value[path[0]], path[1:], replacement)}


@settings(max_examples=400, deadline=None)
@given(
    sample=st.integers(min_value=0, max_value=100),
    path=st.lists(st.sampled_from(FIELDS), min_size=1, max_size=5),
    replacement=json_values,
)
def test_a_sample_record_with_any_part_replaced_never_raises(sample, path, replacement):
    records = _sample_records()
    record = _replace_at(records[sample % len(records)], path, replacement)
    for event in registry_events(record):
        assert isinstance(json.dumps(event.to_dict()), str)


@settings(max_examples=200, deadline=None)
@given(record=json_values)
def test_anything_at_all_never_raises(record):
    registry_events(record)


def test_known_odd_values():
    (record,) = json.loads((SAMPLES / "01-manifest-pushed.json").read_text())["Records"]
    for size in ("-1", "1e3", "٣", " 1", ""):
        odd = json.loads(json.dumps(record))
        odd["dynamodb"]["NewImage"]["size_bytes"] = {"N": size}
        (event,) = registry_events(odd)
        assert event.size is None
    (event,) = registry_events(
        {**record, "dynamodb": {**record["dynamodb"], "ApproximateCreationDateTime": "0.0"}}
    )
    assert event.time == "1970-01-01T00:00:00Z"
    for moment in (10**20, float("nan"), True, "yesterday", "1e400", "٣"):
        odd = json.loads(json.dumps(record))
        odd["dynamodb"]["ApproximateCreationDateTime"] = moment
        (event,) = registry_events(odd)
        assert event.time == ""
