"""template.yaml's scan on push (issue 14): ScanRule sends manifest.pushed events without a
subject to ScanQueue (encrypted, a dead-letter queue, a policy for its rule only), ScanFunction
consumes it one event at a time with partial batch failures, RescanFunction runs daily with
events/rescan/scheduled.json's shape, both with Lambda's longest timeout, their own log
groups and roles scoped to the table and the bucket's prefixes (tests/scanning/
test_scan_pipeline.py compares the roles with what a scan and a re-scan call)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from moto.events.models import EventPattern
from skyport.event_bus import DETAIL_TYPES, SOURCE, detail
from skyport.events import MANIFEST_PUSHED, RegistryEvent
from skyport.scanning.model import SBOM_ARTIFACT_TYPE
from skyport_cli.pipeline import event_source_mappings, scheduled_jobs
from skyport_cli.stack import load_template

ROOT = Path(__file__).resolve().parents[2]


def resources() -> dict:
    return load_template()["Resources"]


def pushed(**fields) -> dict:
    event = RegistryEvent(
        id="1-0",
        type=MANIFEST_PUSHED,
        time="2026-12-06T00:00:00Z",
        repository="team/app",
        ordering_key="team/app@sha256:" + "a" * 64,
        sequence_number="1",
        digest="sha256:" + "a" * 64,
        **fields,
    )
    return {"source": SOURCE, "detail-type": DETAIL_TYPES[event.type], "detail": detail(event)}


def test_the_rule_sends_pushed_manifests_but_no_referrers_to_the_queue():
    rule = resources()["ScanRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "RegistryEventBus"}
    assert rule["Targets"] == [{"Id": "scan-queue", "Arn": {"Fn::GetAtt": ["ScanQueue", "Arn"]}}]
    pattern = EventPattern(json.dumps(rule["EventPattern"]), rule["EventPattern"])
    assert pattern.matches_event(pushed(media_type="application/vnd.oci.image.manifest.v1+json"))
    # Our own SBOMs and reports (and signatures, attestations): a subject, never scanned.
    assert not pattern.matches_event(pushed(subject="sha256:" + "b" * 64, artifact_type=SBOM_ARTIFACT_TYPE))
    tag_event = pushed()
    tag_event["detail-type"] = DETAIL_TYPES["tag.created"]
    assert not pattern.matches_event(tag_event)


def test_the_queue_is_encrypted_has_a_dead_letter_queue_and_takes_its_rule_only():
    r = resources()
    queue = r["ScanQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["ScanDeadLetterQueue", "Arn"]}
    # Six times the function's timeout (Lambda, "Using Lambda with Amazon SQS").
    assert queue["VisibilityTimeout"] >= 6 * r["ScanFunction"]["Properties"]["Timeout"]
    assert r["ScanDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    (statement,) = r["ScanQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ScanRule", "Arn"]}}}


def test_the_scan_function_takes_one_event_at_a_time_with_partial_failures():
    properties = resources()["ScanFunction"]["Properties"]
    assert (properties["Runtime"], properties["Architectures"]) == ("python3.12", ["arm64"])
    assert properties["Timeout"] == 900 and properties["MemorySize"] >= 2048
    (mapping,) = [m for m in event_source_mappings(load_template()) if m.function == "ScanFunction"]
    assert (mapping.kind, mapping.source, mapping.batch_size) == ("SQS", "ScanQueue", 1)
    (event,) = properties["Events"].values()
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    variables = properties["Environment"]["Variables"]
    assert variables["SKYPORT_SCAN_ON_PUSH"] == {"Ref": "ScanOnPush"}
    assert variables["SKYPORT_DEAD_LETTER_QUEUE_URL"] == {"Ref": "ScanDeadLetterQueue"}


def test_the_rescan_runs_daily_once_at_a_time_with_the_sample_s_shape():
    properties = resources()["RescanFunction"]["Properties"]
    assert properties["Timeout"] == 900 and properties["ReservedConcurrentExecutions"] == 1
    (event,) = properties["Events"].values()
    assert event["Type"] == "ScheduleV2" and event["Properties"]["ScheduleExpression"] == "rate(1 day)"
    payload = json.loads(event["Properties"]["Input"])
    sample = json.loads((ROOT / "events" / "rescan" / "scheduled.json").read_text())
    assert set(payload) == set(sample)
    assert {k: v for k, v in payload.items() if not v.startswith("<aws.")} == {
        k: v for k, v in sample.items() if k in ("source", "task")
    }
    assert any(job.function == "RescanFunction" for job in scheduled_jobs(load_template(), {}))
    assert properties["Environment"]["Variables"]["SKYPORT_RESCAN_PULLED_DAYS"] == {"Ref": "RescanPulledDays"}


def test_handlers_and_builds_exist():
    for function in ("ScanFunction", "RescanFunction"):
        resource = resources()[function]
        properties = resource["Properties"]
        assert resource["Metadata"] == {"BuildMethod": "makefile"}
        code = ROOT / properties["CodeUri"]
        assert properties["CodeUri"] == "functions/scan/"
        assert f"build-{function}" in (code / "Makefile").read_text()
        module, _, name = properties["Handler"].rpartition(".")
        assert (code / (module.replace(".", "/") + ".py")).is_file() and name == "handler"
        assert importlib.util.find_spec(module) is not None
        assert properties["Layers"] == [{"Ref": "CoreLayer"}]


def test_logs_and_roles_are_their_own_and_scoped():
    r = resources()
    for function in ("ScanFunction", "RescanFunction"):
        properties = r[function]["Properties"]
        group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert r[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        for policy in properties["Policies"]:
            for statement in policy["Statement"]:
                assert statement["Effect"] == "Allow" and statement["Resource"] != "*"
                assert not any(action.endswith("*") for action in statement["Action"])
                resources_ = (
                    statement["Resource"]
                    if isinstance(statement["Resource"], list)
                    else [statement["Resource"]]
                )
                for resource in resources_:
                    text = json.dumps(resource)
                    assert (
                        "MetadataTable" in text
                        or "/blobs/*" in text
                        or "/manifests/*" in text
                        or ("/osv/*" in text or "Scan" in text)
                    ), resource
