"""The scheduled retention function (functions/retention) fed the EventBridge Scheduler
sample (events/retention/scheduled.json): it applies the rules, resumes after the
repository where a short invocation stopped, and calls AWS for exactly what its role
in template.yaml grants (observed through botocore's before-parameter-build event)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from handler_module import import_handler
from oci import make_image, make_index, push_image, put_manifest
from skyport.registry import Registry
from skyport.storage import keys
from skyport_cli.stack import load_template

from .conftest import DAY_MS, manifest_digests, pull, push

SAMPLE = Path(__file__).resolve().parents[2] / "events" / "retention" / "scheduled.json"


@pytest.fixture
def retention_handler(registry: Registry):
    settings = registry.settings
    environment = {
        "SKYPORT_BUCKET": settings.bucket,
        "SKYPORT_TABLE": settings.table,
        "SKYPORT_S3_ENDPOINT": settings.s3_endpoint or "",
        "SKYPORT_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
    }
    return import_handler(environment, "skyport_retention.handler")


def age(registry: Registry, repository: str, digest: str, days: int) -> None:
    """Make a manifest ``days`` older (its pushed_ms), as if pushed then."""
    key = keys.manifest(repository, digest)
    item = registry.clients.dynamodb.get_item(TableName=registry.settings.table, Key=key)["Item"]
    older = int(item["pushed_ms"]["N"]) - days * DAY_MS
    registry.clients.dynamodb.update_item(
        TableName=registry.settings.table,
        Key=key,
        UpdateExpression="SET pushed_ms = :older",
        ExpressionAttributeValues={":older": {"N": str(older)}},
    )


class Context:
    """Lambda's context object: the time left, as the run sees it, call after call."""

    def __init__(self, *remaining_ms: int) -> None:
        self._remaining = list(remaining_ms)

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining.pop(0) if len(self._remaining) > 1 else self._remaining[0]


def sample() -> dict:
    return json.loads(SAMPLE.read_text())


def test_the_scheduled_event_applies_the_rules(app_client, registry, retention_handler):
    digests = {tag: push(app_client, "team/app", tag) for tag in ("v1", "v2", "v3")}
    for digest in digests.values():
        age(registry, "team/app", digest, 10)
    pull(app_client, "team/app", "v1")
    registry.retention.add("team/*", keep_last="1", keep_pulled_within="7d")
    dry = retention_handler.handler({**sample(), "dryRun": True}, Context(900_000))
    assert dry["to_delete"] == 1 and dry["deleted"] == 0 and len(manifest_digests(registry, "team/app")) == 3
    result = retention_handler.handler(sample(), Context(900_000))
    assert result["complete"] is True and result["deleted"] == 1 and result["dryRun"] is False
    assert manifest_digests(registry, "team/app") == {digests["v1"], digests["v3"]}


def test_a_run_that_runs_short_resumes_where_it_stopped(app_client, registry, retention_handler):
    old = {repo: push(app_client, repo, "old") for repo in ("r/a", "r/b", "r/c")}
    for repo, digest in old.items():
        age(registry, repo, digest, 10)
        push(app_client, repo, "new")
    registry.retention.add("r/*", keep_last="1")
    # Time for one repository: the check before r/b finds less than two minutes left.
    first = retention_handler.handler(sample(), Context(900_000, 60_000))
    assert first["complete"] is False and first["repositories"] == 1
    assert old["r/a"] not in manifest_digests(registry, "r/a")
    assert old["r/b"] in manifest_digests(registry, "r/b")
    cursor = registry.clients.dynamodb.get_item(
        TableName=registry.settings.table, Key=keys.retention_cursor()
    )
    assert cursor["Item"]["after_repository"] == {"S": "r/a"}
    second = retention_handler.handler(sample(), Context(900_000))
    assert second["complete"] is True and second["repositories"] == 2  # r/b and r/c only
    assert all(old[repo] not in manifest_digests(registry, repo) for repo in old)
    cursor = registry.clients.dynamodb.get_item(
        TableName=registry.settings.table, Key=keys.retention_cursor()
    )
    assert "Item" not in cursor  # done: the next run starts from the top


class Operations:
    def __init__(self) -> None:
        self.actions: set[str] = set()

    def __call__(self, model, params, **_) -> None:
        service = model.service_model.endpoint_prefix
        if model.name == "TransactWriteItems":
            for item in params["TransactItems"]:
                (kind,) = item
                self.actions.add({"Delete": "dynamodb:DeleteItem", "Put": "dynamodb:PutItem"}[kind])
        else:
            self.actions.add(f"{service}:{model.name}")


def test_the_role_grants_exactly_what_a_run_calls(app_client, registry, retention_handler):
    # Everything a run does: rules, catalog, a big index (its body in S3) and its children,
    # a delete that empties a repository, a stray pull record, the cursor saved and cleared.
    children = [make_image(layer_sizes=(32,)) for _ in range(2)]
    for child in children:
        push_image(app_client, "big/app", child)
    body, media_type = make_index(children, extra={"annotations": {"padding": "x" * 200_000}})
    assert put_manifest(app_client, "big/app", "v1", body, media_type).status_code == 201
    gone = push(app_client, "gone/app", "v1")
    age(registry, "gone/app", gone, 10)
    registry.clients.dynamodb.put_item(
        TableName=registry.settings.table,
        Item={**keys.manifest_pull("big/app", "sha256:" + "0" * 64), "last_pulled_ms": {"N": "1"}},
    )
    registry.retention.add("gone/*", keep_tags=["release"])  # v1 there is not kept: it goes
    registry.retention.add("big/*", keep_tags=["v1"])
    operations = Operations()
    clients = retention_handler.registry.clients
    for client in (clients.dynamodb, clients.s3):
        client.meta.events.register("before-parameter-build", operations)
    try:
        retention_handler.handler(sample(), Context(900_000, 60_000))
        result = retention_handler.handler(sample(), Context(900_000))
    finally:
        for client in (clients.dynamodb, clients.s3):
            client.meta.events.unregister("before-parameter-build", operations)
    assert result["complete"] is True
    assert manifest_digests(registry, "gone/app") == set()
    assert manifest_digests(registry, "big/app") == {*(c.digest for c in children), _digest(body)}
    fn = load_template()["Resources"]["RetentionFunction"]["Properties"]
    granted = {
        action: statement["Resource"]
        for policy in fn["Policies"]
        for statement in policy["Statement"]
        for action in statement["Action"]
    }
    assert operations.actions == set(granted), (operations.actions, set(granted))
    assert granted["s3:GetObject"] == {"Fn::Sub": "${BlobBucket.Arn}/manifests/*"}
    assert all(
        granted[a] == {"Fn::GetAtt": ["MetadataTable", "Arn"]} for a in granted if a.startswith("dynamodb")
    )


def _digest(body: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(body).hexdigest()
