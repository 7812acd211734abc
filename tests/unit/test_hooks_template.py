"""template.yaml's hooks (issue 11): rules on the registry's bus -> queues -> the replication
and webhook functions; queues encrypted, with visibility for the function's timeout and a
redrive backstop; least-privilege roles compared with the SQS calls skyport.sqs_batches makes;
dead-letter alarms; outputs. The local stack (stack.ensure_hooks) reads the same resources."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name
from skyport.config import Settings
from skyport.event_bus import SOURCE
from skyport.sqs_batches import RetryPolicy
from skyport_cli.pipeline import event_source_mappings
from skyport_cli.stack import load_template

ROOT = Path(__file__).resolve().parents[2]
# function -> (its queue, its dead-letter queue, its rule, the secrets kind it reads)
HOOKS = {
    "ReplicationFunction": (
        "ReplicationQueue",
        "ReplicationDeadLetterQueue",
        "ReplicationRule",
        "replication",
    ),
    "WebhookFunction": ("WebhookQueue", "WebhookDeadLetterQueue", "WebhookRule", "webhooks"),
}
HANDLERS = {
    "ReplicationFunction": "skyport_hooks.replication.replication_handler",
    "WebhookFunction": "skyport_hooks.webhooks.webhook_handler",
}


@pytest.fixture(scope="module")
def resources() -> dict:
    return load_template()["Resources"]


def _statements(function: dict) -> list[dict]:
    statements = []
    for policy in function["Properties"]["Policies"]:
        if "Fn::If" in policy:
            policy = policy["Fn::If"][1]  # the statement when its condition holds
        statements.extend(policy["Statement"])
    return statements


def _arn_of(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


@pytest.mark.parametrize("function", HOOKS)
def test_a_rule_sends_every_registry_event_to_the_functions_queue(resources, function):
    queue, _, rule, _ = HOOKS[function]
    properties = resources[rule]["Properties"]
    assert properties["EventBusName"] == {"Ref": "RegistryEventBus"}
    assert properties["EventPattern"] == {"source": [SOURCE]}
    assert [target["Arn"] for target in properties["Targets"]] == [_arn_of(queue)]
    # EventBridge may send to the queue, for this rule only.
    (policy,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and r["Properties"]["Queues"] == [{"Ref": queue}]
    ]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": _arn_of(rule)}}


@pytest.mark.parametrize("function", HOOKS)
def test_the_queue_outlasts_the_function_and_parks_in_its_own_dead_letter_queue(resources, function):
    queue, dead, _, _ = HOOKS[function]
    fn = resources[function]["Properties"]
    properties = resources[queue]["Properties"]
    assert properties["SqsManagedSseEnabled"] is True
    assert resources[dead]["Properties"]["SqsManagedSseEnabled"] is True
    # Lambda's guide: visibility timeout at least six times the function's timeout.
    assert properties["VisibilityTimeout"] >= 6 * fn["Timeout"]
    assert properties["VisibilityTimeout"] <= 43200
    policy = RetryPolicy.from_env(fn["Environment"]["Variables"])
    redrive = properties["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == _arn_of(dead)
    # A backstop only: the function parks a failing message itself, with the reason, first.
    assert redrive["maxReceiveCount"] > policy.max_attempts
    assert fn["Environment"]["Variables"]["SKYPORT_DEAD_LETTER_QUEUE_URL"] == {"Ref": dead}
    # The backoff never exceeds what SQS allows, nor the retention of the queue.
    assert policy.cap_seconds * policy.max_attempts < properties["MessageRetentionPeriod"]


@pytest.mark.parametrize("function", HOOKS)
def test_the_function_reads_its_queue_with_partial_batch_failures(function):
    (mapping,) = [m for m in event_source_mappings(load_template()) if m.function == function]
    assert (mapping.kind, mapping.source, mapping.handler) == ("SQS", HOOKS[function][0], HANDLERS[function])
    assert 1 <= mapping.batch_size <= 10
    events = load_template()["Resources"][function]["Properties"]["Events"]
    (event,) = events.values()
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


@pytest.mark.parametrize("function", HOOKS)
def test_secrets_are_read_under_the_hook_prefix_only(resources, function):
    _, _, _, kind = HOOKS[function]
    variables = resources[function]["Properties"]["Environment"]["Variables"]
    # The prefix the function is given is Settings' default for the stack's table.
    assert variables["SKYPORT_HOOK_SECRET_PREFIX"] == {"Fn::Sub": "skyport/${MetadataTable}/hooks/"}
    assert Settings(bucket="b", table="T").hook_secrets == "skyport/T/hooks/"
    secrets = [s for s in _statements(resources[function]) if any("secretsmanager" in a for a in s["Action"])]
    (statement,) = secrets
    assert statement["Action"] == ["secretsmanager:GetSecretValue"]
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
        f"skyport/${{MetadataTable}}/hooks/{kind}/*"
    }


def _sqs_operations_in(path: Path) -> set[str]:
    """The SQS API operations a module calls (boto3 method names found in its source)."""
    model = botocore.session.get_session().get_service_model("sqs")
    by_name = {xform_name(operation): operation for operation in model.operation_names}
    tree = ast.parse(path.read_text())
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    return {by_name[name] for name in called if name in by_name}


@pytest.mark.parametrize("function", HOOKS)
def test_sqs_grants_are_exactly_what_the_consumer_calls_on_its_own_queues(resources, function):
    queue, dead, _, _ = HOOKS[function]
    called = _sqs_operations_in(ROOT / "layers" / "skyport" / "skyport" / "sqs_batches.py")
    assert called == {"GetQueueUrl", "ChangeMessageVisibility", "SendMessage"}
    granted = {}
    for statement in _statements(resources[function]):
        for action in statement["Action"]:
            if action.startswith("sqs:"):
                granted[action] = statement["Resource"]
    # SAM adds ReceiveMessage, DeleteMessage and GetQueueAttributes for the SQS event.
    assert granted == {
        "sqs:GetQueueUrl": _arn_of(queue),
        "sqs:ChangeMessageVisibility": _arn_of(queue),
        "sqs:SendMessage": _arn_of(dead),
    }


@pytest.mark.parametrize("function", HOOKS)
def test_no_statement_grants_everything(resources, function):
    for statement in _statements(resources[function]):
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] != "*", statement
        assert not any(action.endswith(":*") or action == "*" for action in statement["Action"]), statement


def test_replication_assumes_only_the_roles_it_is_given(resources):
    policies = resources["ReplicationFunction"]["Properties"]["Policies"]
    (conditional,) = [p for p in policies if "Fn::If" in p]
    condition, granted, otherwise = conditional["Fn::If"]
    assert condition == "HasReplicationDestinationRoles"
    assert otherwise == {"Ref": "AWS::NoValue"}
    (statement,) = granted["Statement"]
    assert statement["Action"] == ["sts:AssumeRole"]
    assert statement["Resource"] == {"Ref": "ReplicationDestinationRoleArns"}
    template = load_template()
    assert template["Parameters"]["ReplicationDestinationRoleArns"]["Default"] == ""


@pytest.mark.parametrize("function", HOOKS)
def test_an_alarm_watches_each_dead_letter_queue(resources, function):
    _, dead, _, _ = HOOKS[function]
    alarms = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["Dimensions"]
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dead, "QueueName"]}}]
    ]
    (alarm,) = alarms
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_outputs_name_the_queues():
    outputs = load_template()["Outputs"]
    for queue in ("ReplicationQueue", "ReplicationDeadLetterQueue", "WebhookQueue", "WebhookDeadLetterQueue"):
        assert outputs[f"{queue}Url"]["Value"] == {"Ref": queue}


def test_event_source_mappings_come_from_the_template():
    mappings = {m.function: m for m in event_source_mappings(load_template())}
    assert set(mappings) == {"EventsFunction", "ReplicationFunction", "WebhookFunction", "ScanFunction"}
    events = mappings["EventsFunction"]
    assert (events.kind, events.source, events.on_failure) == (
        "DynamoDB",
        "MetadataTable",
        "EventsDeadLetterQueue",
    )
    assert [json.dumps(f, separators=(",", ":")) for f in events.filters] == [
        f["Pattern"]
        for f in load_template()["Resources"]["EventsFunction"]["Properties"]["Events"]["TableStream"][
            "Properties"
        ]["FilterCriteria"]["Filters"]
    ]
