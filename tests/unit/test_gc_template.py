"""template.yaml's garbage collector (issue 12): a scheduled function (EventBridge
Scheduler, a parameter for its expression), 900 s, one at a time, and a role that grants
exactly the AWS calls skyport/gc makes (the scan of tests/unit/test_template.py, applied
to the GC's modules)."""

from __future__ import annotations

import ast

import botocore.session
import pytest
from botocore import xform_name
from skyport_cli.stack import TEMPLATE_PATH, load_template

CORE = TEMPLATE_PATH.parent / "layers" / "skyport" / "skyport"
# What the GC function runs beyond the handler: the collector and its storage.
GC_CODE = [
    CORE / "gc",
    CORE / "storage" / "dynamodb" / "gc.py",
    TEMPLATE_PATH.parent / "functions" / "gc" / "skyport_gc",
]
# S3 calls the collector makes through the ObjectStore (storage/s3.py): reading a manifest
# body kept in S3, deleting a blob's or an orphan's object.
THROUGH_THE_OBJECT_STORE = {"s3:GetObject", "s3:DeleteObject"}
# And the one listing it uses of storage/s3_listings.py (shared with the upload-expiry
# sweep, whose multipart listings the collector never calls): objects_page, ListObjectsV2.
THROUGH_THE_LISTINGS = {"s3:ListBucket"}
ACTIONS_OF = {("s3", "ListObjectsV2"): "s3:ListBucket"}


@pytest.fixture(scope="module")
def function() -> dict:
    return load_template()["Resources"]["GcFunction"]


def test_it_runs_on_a_schedule_the_operator_chooses(function):
    properties = function["Properties"]
    (event,) = properties["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == {"Ref": "GcSchedule"}
    parameters = load_template()["Parameters"]
    assert parameters["GcSchedule"]["Default"] == "rate(1 day)"
    assert properties["Environment"]["Variables"]["SKYPORT_GC_GRACE"] == {"Ref": "GcGracePeriod"}
    assert parameters["GcGracePeriod"]["Default"] == "24h"


def test_one_run_at_a_time_within_lambdas_limit(function):
    properties = function["Properties"]
    assert properties["Timeout"] == 900
    assert properties["ReservedConcurrentExecutions"] == 1
    assert properties["Handler"] == "skyport_gc.handler.handler"


def _calls_in_gc_code() -> set[str]:
    session = botocore.session.get_session()
    operations: dict[str, list[tuple[str, str]]] = {}
    for service in ("s3", "dynamodb"):
        for operation in session.get_service_model(service).operation_names:
            operations.setdefault(xform_name(operation), []).append((service, operation))
    actions: set[str] = set()
    for root in GC_CODE:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                name = None
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    name = node.value
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    name = node.func.attr
                for service, operation in operations.get(name or "", []):
                    actions.add(ACTIONS_OF.get((service, operation), f"{service}:{operation}"))
    return actions


def test_the_role_grants_exactly_what_the_collector_calls(function):
    granted: set[str] = set()
    resources = []
    for policy in function["Properties"]["Policies"]:
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            granted.update(statement["Action"])
            resources += (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
    needed = _calls_in_gc_code() | THROUGH_THE_OBJECT_STORE | THROUGH_THE_LISTINGS
    # Query and PutItem come through Table.query and Table.put (storage/dynamodb/table.py).
    needed |= {"dynamodb:Query", "dynamodb:PutItem"}
    assert granted == needed
    assert "*" not in resources and all(isinstance(r, dict) for r in resources)


def test_the_listing_is_limited_to_the_collected_prefixes(function):
    (statement,) = [
        s
        for p in function["Properties"]["Policies"]
        for s in p["Statement"]
        if s["Action"] == ["s3:ListBucket"]
    ]
    assert statement["Condition"] == {"StringLike": {"s3:prefix": ["blobs/*", "uploads/*"]}}
