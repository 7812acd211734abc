"""EventBusPublisher when PutEvents accepts some entries and refuses others (FailedEntryCount).

moto never refuses a well-formed entry, so this one answer of EventBridge's is given by
botocore's Stubber on a real boto3 ``events`` client: the AWS side is stubbed, our code is
not. Everything else (a missing bus, an oversize entry, calls of ten) runs against moto in
test_events_function.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import boto3
from botocore.stub import ANY, Stubber
from skyport.event_bus import EventBusPublisher

SAMPLES = Path(__file__).resolve().parents[2] / "events"


def tag_records(count: int) -> list[dict]:
    """``count`` tag.created records (one event each), distinct tags and sequence numbers."""
    (template,) = json.loads((SAMPLES / "stream" / "03-tag-created.json").read_text())["Records"]
    records = []
    for number in range(count):
        record = copy.deepcopy(template)
        record["eventID"] = f"{template['eventID'][:-4]}{number:04d}"
        record["dynamodb"]["SequenceNumber"] = str(int(template["dynamodb"]["SequenceNumber"]) + number)
        for key in ("Keys", "NewImage"):
            record["dynamodb"][key]["SK"] = {"S": f"TAG#v{number}"}
        records.append(record)
    return records


def test_a_refused_entry_fails_its_record_and_every_later_one_and_nothing_more_is_sent():
    client = boto3.client("events", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    records = tag_records(12)
    accepted = [{"EventId": f"id-{n}"} for n in range(10)]
    accepted[4] = {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}
    with Stubber(client) as stub:
        # One answer only: a second call (the last two records) would fail the test.
        stub.add_response("put_events", {"FailedEntryCount": 1, "Entries": accepted}, {"Entries": ANY})
        outcome = EventBusPublisher(SimpleNamespace(events=client), "bus").publish_records(records)
        stub.assert_no_pending_responses()
    assert outcome.failed_records == tuple(range(4, 12))
    assert outcome.published == 9
    reasons = {failure.event.tag: failure.reason for failure in outcome.failures}
    assert reasons["v4"] == "ThrottlingException: Rate exceeded"
    assert set(reasons) == {"v4", "v10", "v11"}  # v5..v9 arrived; they are sent again on retry


def test_an_answer_without_one_result_per_entry_fails_the_whole_call():
    client = boto3.client("events", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": []}, {"Entries": ANY})
        outcome = EventBusPublisher(SimpleNamespace(events=client), "bus").publish_records(tag_records(2))
    assert outcome.failed_records == (0, 1) and outcome.published == 0
