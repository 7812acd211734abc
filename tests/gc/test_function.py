"""The GC function (functions/gc) fed events/gc/scheduled.json, as EventBridge Scheduler
invokes it: a run within the invocation's time, resumed by the next invocation when the
time runs out, and never two runs at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gc_support import assert_pullable, items, object_keys
from handler_module import import_handler
from oci import make_image, push_blob, push_image
from skyport.registry import Registry
from skyport_cli.gateway import LambdaContext

SAMPLE = Path(__file__).resolve().parents[2] / "events" / "gc" / "scheduled.json"


def _handler(registry: Registry, grace: str = "0"):
    settings = registry.settings
    environment = {
        "SKYPORT_BUCKET": settings.bucket,
        "SKYPORT_TABLE": settings.table,
        "SKYPORT_S3_ENDPOINT": settings.s3_endpoint or "",
        "SKYPORT_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
        "SKYPORT_GC_GRACE": grace,
    }
    return import_handler(environment, "skyport_gc.handler").handler


def _context(seconds: float) -> LambdaContext:
    return LambdaContext(function_name="skyport-gc", deadline=time.monotonic() + seconds)


def _garbage(http, count: int) -> None:
    """An image kept, and ``count`` uploaded blobs no manifest references."""
    push_image(http, "team/app", make_image((100,)), "v1")
    for number in range(count):
        push_blob(http, f"team/junk{number % 3}", f"garbage {number}".encode(), mode="post")


def _shape(registry: Registry) -> list[tuple[str, str]]:
    return sorted((pk.split("#")[0], sk.split("#")[0]) for pk, sk in items(registry, ""))


def test_the_scheduled_event_runs_a_whole_run(http, registry):
    _garbage(http, 4)
    event = json.loads(SAMPLE.read_text())
    assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"

    response = _handler(registry)(event, _context(900))

    assert response["complete"] and response["removed"] == {
        "manifests": 0,
        "links": 4,
        "blobs": 4,
        "objects": 0,
    }
    assert "listed" not in response  # counters only: no names in the function's response
    assert_pullable(http, "team/app", "v1")


def test_a_run_bigger_than_an_invocation_is_continued_by_the_next(
    http, registry, settings, aws_clients, template
):
    from harness import new_stack
    from skyport_api.app import create_app
    from starlette.testclient import TestClient

    _garbage(http, 7)
    # The same content in a second registry, collected in one go, for comparison.
    twin = Registry(
        new_stack(settings.s3_endpoint, aws_clients, template, label="gctwin"), clients=aws_clients
    )
    with TestClient(create_app(twin), follow_redirects=False) as twin_http:
        _garbage(twin_http, 7)
    whole = twin.gc.run(0)

    # Past its margin from the start: each invocation does one page, saves, and returns.
    handler = _handler(registry)
    margin = handler.__globals__["MARGIN_SECONDS"]
    reports = []
    for _ in range(200):
        reports.append(handler({}, _context(margin - 1)))
        if reports[-1]["complete"]:
            break
    assert len(reports) > 3 and reports[-1]["complete"]
    assert all(report["resumed"] for report in reports[1:])
    assert len({report["run_id"] for report in reports}) == 1
    assert reports[-1]["removed"] == whole["removed"] and reports[-1]["bytes"] == whole["bytes"]
    # The images are random: the same shape of what is left, item kind by item kind.
    assert _shape(registry) == _shape(twin)
    assert len(object_keys(registry, "blobs/")) == len(object_keys(twin, "blobs/"))
    assert_pullable(http, "team/app", "v1")


def test_two_runs_never_overlap(registry):
    first = registry.gc.begin(0, page_size=1)
    assert first is not None
    other = Registry(registry.settings, clients=registry.clients)  # another invocation
    assert other.gc.begin(0) is None
    assert other.gc.run(0)["busy"] is True
    # The holder goes on; once it is done, a new run may start.
    while registry.gc.step(first):
        pass
    assert other.gc.begin(0) is not None


def test_an_expired_lease_is_taken_over_and_the_old_holder_stops(registry):
    from skyport.gc import GarbageCollector
    from skyport.storage.dynamodb.gc import LeaseLost

    crashed = registry.gc.begin(0, page_size=1)
    assert crashed is not None
    later = time.time() + 2000  # past the 960 s lease
    successor = GarbageCollector(
        registry.gc._store, registry.gc._objects, registry.gc._listing, clock=lambda: later
    )
    resumed = successor.begin(0)
    assert resumed is not None and resumed.resumed and resumed.state.run_id == crashed.state.run_id
    with pytest.raises(LeaseLost):
        for _ in range(3):  # a page's read, then its deletes and the save that finds the lease gone
            registry.gc.step(crashed)
