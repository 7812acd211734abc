"""template.yaml's RetentionFunction (issue 12): a daily EventBridge Scheduler schedule
(SAM ScheduleV2) whose payload is events/retention/scheduled.json's shape, Lambda's
longest timeout, one run at a time, a log group with the stack's retention, and a role
scoped to the table and the manifests' prefix (tests/retention/test_handler.py compares
its actions with the calls a run makes)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from skyport.retention import STOP_MARGIN_SECONDS
from skyport_cli.stack import load_template

ROOT = Path(__file__).resolve().parents[2]


def _function() -> dict:
    return load_template()["Resources"]["RetentionFunction"]


def test_a_daily_schedule_invokes_it_with_the_sample_s_shape():
    (event,) = _function()["Properties"]["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == "rate(1 day)"
    payload = json.loads(event["Properties"]["Input"])
    sample = json.loads((ROOT / "events" / "retention" / "scheduled.json").read_text())
    assert set(payload) == set(sample)
    assert payload["scheduledTime"] == "<aws.scheduler.scheduled-time>"
    assert {k: v for k, v in payload.items() if not v.startswith("<aws.")} == {
        k: v for k, v in sample.items() if k in ("source", "task")
    }


def test_one_bounded_run_at_a_time():
    properties = _function()["Properties"]
    assert properties["Timeout"] == 900
    assert properties["ReservedConcurrentExecutions"] == 1
    assert STOP_MARGIN_SECONDS < properties["Timeout"] / 4


def test_the_handler_and_its_build_exist():
    properties = _function()["Properties"]
    assert _function()["Metadata"] == {"BuildMethod": "makefile"}
    code = ROOT / properties["CodeUri"]
    assert "build-RetentionFunction:" in (code / "Makefile").read_text()
    module, _, function = properties["Handler"].rpartition(".")
    assert (code / (module.replace(".", "/") + ".py")).is_file() and function == "handler"
    assert importlib.util.find_spec(module) is not None
    assert properties["Layers"] == [{"Ref": "CoreLayer"}]


def test_logs_and_role_are_its_own_and_scoped():
    resources = load_template()["Resources"]
    properties = _function()["Properties"]
    group = properties["LoggingConfig"]["LogGroup"]["Ref"]
    assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for policy in properties["Policies"]:
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and statement["Resource"] != "*"
            assert not any(action.endswith("*") for action in statement["Action"])
