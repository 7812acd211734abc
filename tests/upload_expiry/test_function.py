"""The scheduled function (functions/upload_expiry, template.yaml UploadExpiryFunction):
its handler fed events/upload_expiry/scheduled.json against moto; and its role grants
exactly the AWS calls a sweep that removes everything it can remove makes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from handler_module import import_handler
from skyport.registry import Registry
from skyport.storage import keys
from skyport_cli.stack import load_template

from .conftest import abandon, crash_leftovers, multipart_uploads, objects, session_item

EVENT = Path(__file__).resolve().parents[2] / "events" / "upload_expiry" / "scheduled.json"
# IAM actions of the operations whose action is not service:Operation.
ACTIONS_OF = {
    "s3:ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListParts": "s3:ListMultipartUploadParts",
}


class _Context:
    """Stands in for the Lambda context: the invocation's remaining time."""

    def __init__(self, seconds: float) -> None:
        self._until = time.time() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._until - time.time()) * 1000)


def _handler(registry: Registry):
    settings = registry.settings
    environment = {
        "SKYPORT_BUCKET": settings.bucket,
        "SKYPORT_TABLE": settings.table,
        "SKYPORT_S3_ENDPOINT": settings.s3_endpoint or "",
        "SKYPORT_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
    }
    return import_handler(environment, "skyport_upload_expiry.handler").handler


def _expired_a_week_ago(registry: Registry, upload_id: str) -> None:
    """Stands in for a week passing: the session's expires_at moved into the past (boto3)."""
    registry.clients.dynamodb.update_item(
        TableName=registry.settings.table,
        Key=keys.upload(upload_id),
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 3600)}},
    )


def test_the_scheduled_event_sweeps_expired_sessions(registry, app_client):
    event = json.loads(EVENT.read_text())
    expired, size = abandon(app_client)
    live, _ = abandon(app_client)
    _expired_a_week_ago(registry, expired)
    handler = _handler(registry)

    dry = handler({**event, "dry_run": True}, _Context(600))
    assert (dry["dry_run"], dry["sessions"], dry["bytes"]) == (True, 1, size)
    assert session_item(registry, expired) is not None

    result = handler(event, _Context(600))

    assert result["dry_run"] is False and result["complete"] is True
    assert (result["sessions"], result["multipart_uploads"], result["tail_objects"]) == (1, 0, 0)
    assert result["bytes"] == size and result["errors"] == 0
    assert "removed" not in result  # counts only
    assert session_item(registry, expired) is None
    assert session_item(registry, live) is not None
    assert [u["Key"] for u in multipart_uploads(registry)] == [keys.blob_object(live)]
    assert [k.split("/")[1] for k in objects(registry, "uploads/")] == [live]


def test_the_handler_stops_short_of_the_invocations_end(registry, app_client):
    expired, _ = abandon(app_client)
    _expired_a_week_ago(registry, expired)
    result = _handler(registry)(json.loads(EVENT.read_text()), _Context(20))  # under the 30 s margin
    assert result["complete"] is False and result["sessions"] == 0
    assert session_item(registry, expired) is not None


@pytest.fixture
def aws_operations(registry: Registry):
    """Every S3 and DynamoDB operation the registry's clients make, through botocore's
    before-call event (nothing replaced)."""
    seen: set[str] = set()

    def record(model, **_) -> None:
        seen.add(f"{model.service_model.endpoint_prefix}:{model.name}")

    clients = [registry.clients.s3, registry.clients.dynamodb]
    for client in clients:
        client.meta.events.register("before-call", record)
    yield seen
    for client in clients:
        client.meta.events.unregister("before-call", record)


def test_the_role_grants_exactly_what_a_full_sweep_calls(registry, sweeper, short_client, aws_operations):
    from .conftest import wait_until_expired

    abandon(short_client)  # with a quota entry: UpdateItem
    crash_leftovers(registry)
    wait_until_expired()
    aws_operations.clear()
    report = sweeper.upload_expiry.sweep(grace_seconds=0)
    assert (report.sessions, report.multipart_uploads, report.tail_objects) == (1, 1, 1)

    needed = {ACTIONS_OF.get(operation, operation) for operation in aws_operations}
    function = load_template()["Resources"]["UploadExpiryFunction"]["Properties"]
    granted = set()
    for policy in function["Policies"]:
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            granted.update(statement["Action"])
    assert granted == needed
