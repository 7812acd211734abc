"""`skyport usage [PATTERN] [--json]` on a served registry's table: the same figures as the
extension endpoint, PATTERN in the grants' syntax, "never" for a repository nobody pulled,
and the total's compact digest set measured."""

from __future__ import annotations

import json
import os
import tracemalloc

import pytest
from cli_support import REGION, write_served_state
from cli_support import run_cli as run
from oci import make_image
from skyport.registry import Registry
from skyport.usage import UsageTotal
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import SHARED_LAYER, image_with_shared_layer, push, record_pull


@pytest.fixture
def served(registry: Registry, tmp_path, monkeypatch) -> None:
    """The state file `skyport serve` writes (this process stands in for the server)."""
    write_served_state(registry.settings, tmp_path, monkeypatch)


@pytest.fixture
def app_client(registry: Registry):
    with TestClient(create_app(registry), follow_redirects=False) as client:
        yield client


@pytest.fixture
def pushed(app_client, registry):
    images = {
        "team/a": image_with_shared_layer(1000),
        "team/b": image_with_shared_layer(2000),
        "other/c": make_image((500,)),
    }
    for repository, image in images.items():
        push(app_client, repository, image, "v1")
    record_pull(registry, "team/a", images["team/a"].digest)
    return images


def test_the_cli_and_the_endpoint_agree(capsys, served, app_client, pushed):
    code, out, err = run(capsys, "usage", "--json")
    assert code == 0, err
    cli = json.loads(out)
    endpoint = app_client.get("/v2/_skyport/usage").json()
    assert cli == endpoint
    assert cli["total"] == app_client.get("/v2/_skyport/usage/total").json()["total"]
    for repository in cli["repositories"]:
        assert app_client.get(f"/v2/{repository['name']}/_skyport/usage").json() == repository


def test_a_pattern_selects_and_the_total_counts_the_shared_layer_once(capsys, registry, pushed):
    settings = registry.settings
    target = [
        "--table",
        settings.table,
        "--dynamodb-endpoint",
        settings.dynamodb_endpoint,
        "--region",
        REGION,
    ]
    code, out, _ = run(capsys, "usage", "team/*", "--json", *target)
    assert code == 0
    report = json.loads(out)
    assert [r["name"] for r in report["repositories"]] == ["team/a", "team/b"]
    assert report["total"]["blob_bytes"] == sum(r["blob_bytes"] for r in report["repositories"]) - len(
        SHARED_LAYER
    )


def test_text_shows_never_for_a_repository_nobody_pulled(capsys, served, pushed):
    code, out, _ = run(capsys, "usage")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split("\t") == [
        "REPOSITORY",
        "STORED",
        "BYTES",
        "MANIFESTS",
        "TAGS",
        "LAST PUSH",
        "LAST PULL",
    ]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows["team/b"][-1] == "never" and rows["team/a"][-1].endswith("Z")
    assert rows["team/a"][3:5] == ["1", "1"]
    assert lines[-1].startswith("TOTAL (3 repositories; shared blobs once)")


@pytest.mark.parametrize("pattern", ["Team/*", "team//a", "a**"])
def test_an_invalid_pattern_is_refused(capsys, served, pattern):
    code, _, err = run(capsys, "usage", pattern)
    assert code == 1 and "invalid repository pattern" in err


def test_the_totals_digest_set_costs_about_a_hundred_bytes_a_distinct_blob():
    """The per-blob cost README and skyport/usage.py state, measured."""
    count = 50_000
    digests = ["sha256:" + os.urandom(32).hex() for _ in range(count)]
    total = UsageTotal()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for digest in digests:
            total.add_blob(digest, 1)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_blob = grown / count
    print(f"usage total: {per_blob:.0f} bytes per distinct sha256 digest")
    assert total.blobs == count
    assert per_blob < 130, per_blob
