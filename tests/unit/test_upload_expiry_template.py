"""template.yaml's UploadExpiryFunction (issue 12, abandoned uploads expire): hourly on
EventBridge Scheduler, one at a time, within Lambda's 15 minutes, its handler the one in
functions/upload_expiry, its role scoped to the bucket's prefixes and the table (the
actions themselves are compared with a real sweep's calls in tests/upload_expiry), and
the lifecycle rules kept as the backstop."""

from __future__ import annotations

import importlib.util
import json

from skyport_cli.stack import TEMPLATE_PATH, load_template

FUNCTION = "UploadExpiryFunction"


def _function() -> dict:
    return load_template()["Resources"][FUNCTION]


def test_it_runs_hourly_one_at_a_time_within_lambdas_limit():
    properties = _function()["Properties"]
    (event,) = properties["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    assert properties["Timeout"] == 900
    assert properties["ReservedConcurrentExecutions"] == 1
    assert properties["Layers"] == [{"Ref": "CoreLayer"}]
    assert properties["LoggingConfig"]["LogGroup"] == {"Ref": "UploadExpiryFunctionLogGroup"}


def test_the_schedule_sends_the_sample_event():
    event = _function()["Properties"]["Events"]["Hourly"]["Properties"]
    sample = TEMPLATE_PATH.parent / "events" / "upload_expiry" / "scheduled.json"
    assert json.loads(event["Input"]) == json.loads(sample.read_text())


def test_the_handler_is_the_functions_module():
    properties = _function()["Properties"]
    module, _, name = properties["Handler"].rpartition(".")
    code = TEMPLATE_PATH.parent / properties["CodeUri"]
    assert (code / "Makefile").read_text().count(f"build-{FUNCTION}:") == 1
    path = code / (module.replace(".", "/") + ".py")
    assert path.is_file() and f"def {name}(" in path.read_text()
    assert importlib.util.find_spec(module.split(".")[0]) is not None


def test_the_role_is_scoped_to_the_prefixes_and_table_it_works_on():
    statements = [s for p in _function()["Properties"]["Policies"] for s in p["Statement"]]
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["ListUploadTails"]["Condition"] == {"StringLike": {"s3:prefix": "uploads/*"}}
    assert by_sid["AbortUploads"]["Resource"] == {"Fn::Sub": "${BlobBucket.Arn}/blobs/*"}
    assert by_sid["DeleteTails"]["Resource"] == {"Fn::Sub": "${BlobBucket.Arn}/uploads/*"}
    assert by_sid["ExpireSessions"]["Resource"] == {"Fn::GetAtt": ["MetadataTable", "Arn"]}
    for statement in statements:
        assert statement["Effect"] == "Allow" and statement["Resource"] != "*"
        assert not any(action.endswith("*") for action in statement["Action"])
        assert "s3:GetObject" not in statement["Action"] and "s3:PutObject" not in statement["Action"]


def test_the_lifecycle_rules_stay_as_the_backstop():
    rules = load_template()["Resources"]["BlobBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any("AbortIncompleteMultipartUpload" in rule for rule in rules)
    assert any(rule.get("Prefix") == "uploads/" and "ExpirationInDays" in rule for rule in rules)
