"""The scan functions as deployed and as `skyport serve` runs them: the local pipeline
(skyport_cli.pipeline: the ScanQueue mapping read from template.yaml) scans a push within
seconds; the daily re-scan (RescanFunction's handler) reports what newer OSV data finds as
scan.completed with newFindings, replacing the report and keeping the SBOM; and the scan
function's role grants what a scan calls."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator

import pytest
from handler_module import import_handler
from skyport.config import Settings
from skyport.events import SCAN_COMPLETED
from skyport.registry import Registry
from skyport.scanning.model import REPORT_ARTIFACT_TYPE, SBOM_ARTIFACT_TYPE
from skyport.storage.clients import AwsClients
from skyport.storage.s3 import S3ObjectStore
from skyport.vulnerabilities.mirror import DEFAULT_ECOSYSTEMS, mirror, shipped_data
from skyport_api.app import create_app
from skyport_cli.pipeline import LocalPipeline, LocalStack
from skyport_cli.stack import ensure_stack, load_template
from starlette.testclient import TestClient

from scanning.images import DEBIAN_PYTHON
from scanning.scan_support import ScanPipeline, mirror_sample_osv, push_scan_image

REGION = "us-east-1"
REPO = "team/app"
NEW_ID = "GHSA-skyp-0rt0-test"


@pytest.fixture
def api(registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(registry), follow_redirects=False) as client:
        yield client


@pytest.fixture
def local_pipeline(
    registry: Registry, template: dict, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalPipeline]:
    """`skyport serve`'s pipeline on the session's moto, for this registry's table."""
    for service in ("SQS", "EVENTBRIDGE", "SECRETS_MANAGER"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", moto_endpoint)
    monkeypatch.setenv("SKYPORT_HOOK_BACKOFF_SECONDS", "1")
    settings = registry.settings
    clients = AwsClients(
        Settings(
            bucket="-", table="-", region=REGION, s3_endpoint=moto_endpoint, dynamodb_endpoint=moto_endpoint
        )
    )
    hooks = ensure_stack(
        clients.s3,
        clients.dynamodb,
        settings.bucket,
        settings.table,
        template=template,
        region=REGION,
        events_client=clients.events,
        sqs_client=clients.sqs,
    )
    stack = LocalStack(settings.table, settings.bucket, REGION, moto_endpoint, moto_endpoint, hooks)
    running = LocalPipeline(stack, clients, template)
    lines = running.start()
    assert any(line.startswith("ScanFunction <- ") for line in lines), lines
    assert any(line.startswith("RescanFunction <- rate(1 day)") for line in lines), lines
    try:
        yield running
    finally:
        running.stop()


def test_the_local_pipeline_scans_a_push_within_seconds(api, registry, local_pipeline):
    mirror_sample_osv(registry)
    started = time.monotonic()
    digest = push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")
    listed: list = []
    while time.monotonic() - started < 30 and len(listed) < 2:
        listed = api.get(f"/v2/{REPO}/referrers/{digest}").json()["manifests"]
        time.sleep(0.2)
    assert sorted(entry["artifactType"] for entry in listed) == sorted(
        [SBOM_ARTIFACT_TYPE, REPORT_ARTIFACT_TYPE]
    )
    assert time.monotonic() - started < 20
    assert local_pipeline.invocations["ScanFunction"] >= 1


def newer_osv_data(tmp_path) -> str:
    """The shipped data set and one more record: a new advisory for requests 2.25.0."""
    directory = tmp_path / "osv"
    shutil.copytree(shipped_data(), directory)
    record = json.loads((directory / "PyPI" / "GHSA-j8r2-6x86-q33q.json").read_text())
    record.update(id=NEW_ID, aliases=[], modified="2026-12-01T00:00:00Z", summary="found later")
    (directory / "PyPI" / f"{NEW_ID}.json").write_text(json.dumps(record))
    return str(directory)


class Context:
    def __init__(self, remaining_ms: int = 900_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def rescan_handler(registry: Registry):
    settings = registry.settings
    module, _, name = load_template()["Resources"]["RescanFunction"]["Properties"]["Handler"].rpartition(".")
    return import_handler(
        {
            "SKYPORT_BUCKET": settings.bucket,
            "SKYPORT_TABLE": settings.table,
            "SKYPORT_S3_ENDPOINT": settings.s3_endpoint or "",
            "SKYPORT_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
            "SKYPORT_RESCAN_PULLED_DAYS": "7",
        },
        module,
    )


def test_the_daily_rescan_reports_newly_found_vulnerabilities(
    api, registry, moto_endpoint, monkeypatch, tmp_path
):
    mirror_sample_osv(registry)
    pipeline = ScanPipeline(registry, moto_endpoint, monkeypatch)
    pulled = push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")
    never_pulled = push_scan_image(api, "team/quiet", DEBIAN_PYTHON, "1.0")
    pipeline.run()
    assert api.get(f"/v2/{REPO}/manifests/1.0").status_code == 200  # a pull: its record written
    before = registry.scanning.record(REPO, pulled)
    quiet_before = registry.scanning.record("team/quiet", never_pulled)

    store = S3ObjectStore(registry.clients.s3, registry.settings.bucket)
    assert mirror(newer_osv_data(tmp_path), store, DEFAULT_ECOSYSTEMS).updated == ["PyPI"]
    time.sleep(1.1)  # a report names the second it was made in
    module = rescan_handler(registry)
    result = module.handler({"source": "skyport.schedule", "task": "rescan"}, Context())

    assert result["rescanned"] == 1 and result["failed"] == 0 and result["finished"] is True
    assert result["newFindings"] == {f"{REPO}@{pulled}": [NEW_ID]}
    after = registry.scanning.record(REPO, pulled)
    assert after.sbom_digest == before.sbom_digest and after.report_digest != before.report_digest
    assert after.new_findings == (NEW_ID,)
    assert api.get(f"/v2/{REPO}/manifests/{before.report_digest}").status_code == 404
    assert NEW_ID in {finding.id for finding in registry.scanning.report(REPO, pulled).findings}
    # Not pulled within the window: left as it was.
    assert registry.scanning.record("team/quiet", never_pulled) == quiet_before

    since = len(pipeline.events)
    pipeline.run()
    (completed,) = pipeline.of_type(SCAN_COMPLETED, since)
    assert completed.digest == pulled and completed.new_findings == (NEW_ID,)
    assert completed.report_digest == after.report_digest


class Operations:
    """The IAM actions a client's calls need (before-parameter-build hook)."""

    def __init__(self) -> None:
        self.actions: set[str] = set()

    def __call__(self, model, params, **_) -> None:
        service = model.service_model.endpoint_prefix
        if model.name == "TransactWriteItems":
            for item in params["TransactItems"]:
                (kind,) = item
                self.actions.add(
                    {
                        "Delete": "dynamodb:DeleteItem",
                        "Put": "dynamodb:PutItem",
                        "Update": "dynamodb:UpdateItem",
                        "ConditionCheck": "dynamodb:ConditionCheckItem",
                    }[kind]
                )
        else:
            self.actions.add(f"{service}:{model.name}")


def granted(function: str) -> dict[str, object]:
    properties = load_template()["Resources"][function]["Properties"]
    return {
        action: statement["Resource"]
        for policy in properties["Policies"]
        for statement in policy["Statement"]
        for action in statement["Action"]
    }


def test_the_roles_grant_what_a_scan_and_a_rescan_call(api, registry, moto_endpoint, monkeypatch, tmp_path):
    mirror_sample_osv(registry)
    pipeline = ScanPipeline(registry, moto_endpoint, monkeypatch)
    digest = push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")
    operations = Operations()
    scan_clients = pipeline.handler.__globals__["registry"].clients
    for client in (scan_clients.dynamodb, scan_clients.s3):
        client.meta.events.register("before-parameter-build", operations)
    try:
        pipeline.run()
    finally:
        for client in (scan_clients.dynamodb, scan_clients.s3):
            client.meta.events.unregister("before-parameter-build", operations)
    assert registry.scanning.record(REPO, digest).status == "complete"
    scan_role = {action for action in granted("ScanFunction") if action.split(":")[0] in ("dynamodb", "s3")}
    assert operations.actions <= scan_role, operations.actions - scan_role
    # What a scan on push does not exercise here, and why the role has it: a report left by
    # a failed scan is deleted (DeleteItem), a blob registered first by another push has
    # our copy deleted (DeleteObject).
    assert scan_role - operations.actions <= {"dynamodb:DeleteItem", "s3:DeleteObject"}, (
        scan_role - operations.actions
    )

    assert api.get(f"/v2/{REPO}/manifests/1.0").status_code == 200
    module = rescan_handler(registry)
    rescan = Operations()
    clients = module.registry.clients
    for client in (clients.dynamodb, clients.s3):
        client.meta.events.register("before-parameter-build", rescan)
    try:
        time.sleep(1.1)
        assert module.handler({}, Context())["rescanned"] == 1
    finally:
        for client in (clients.dynamodb, clients.s3):
            client.meta.events.unregister("before-parameter-build", rescan)
    rescan_role = set(granted("RescanFunction"))
    assert rescan.actions <= rescan_role, rescan.actions - rescan_role
    # Not exercised: our copy of a report blob deleted when the same bytes were registered first.
    assert rescan_role - rescan.actions <= {"s3:DeleteObject"}, rescan_role - rescan.actions
