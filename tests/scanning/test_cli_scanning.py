"""`skyport scan|sbom|vulns REF` (issue 14; cli/skyport_cli/scanning.py) on a test's table and
bucket (--table/--bucket, as against a deployed stack) and on the served registry (`make
run`'s state file): what they print, their exit codes (vulns: 0 clean, 1 findings at or
above --severity, 2 cannot tell), and one clear line on stderr for bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cli_support import run_cli as run
from cli_support import table_flags, write_served_state
from oci import OCI_INDEX, OCI_MANIFEST, make_image, push_image, put_manifest
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient

from scanning.images import ALPINE_NODE
from scanning.using_support import (
    VULNERABLE,
    mirror_sample_osv,
    push_and_scan,
    push_scan_image,
    worst_severity,
)

REPO = "team/app"


@pytest.fixture
def api(registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(registry), follow_redirects=False) as client:
        yield client


@pytest.fixture
def target(registry: Registry) -> list[str]:
    return table_flags(registry.settings, with_bucket=True)


@pytest.mark.parametrize("command", ["scan", "sbom", "vulns"])
def test_every_command_has_help(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and f"usage: skyport {command}" in out and "REF" in out


def test_scan_runs_now_and_again_printing_counts_per_platform(capsys, api, registry, target):
    mirror_sample_osv(registry)
    digest = push_scan_image(api, REPO, VULNERABLE, "1.0")
    assert registry.scanning.record(REPO, digest) is None  # no pipeline here: never scanned
    code, out, err = run(capsys, "scan", f"{REPO}:1.0", *target)
    assert code == 0, err
    report = registry.scanning.report(REPO, digest)
    counts = report.counts()
    expected = ", ".join(
        f"{level} {counts[level]}" for level in ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
    )
    assert out == f"{REPO}@{digest}: scanned: {expected}\n"
    # Again, by digest: scanned again (forced, where the scan on push would skip it).
    code, out, err = run(capsys, "scan", f"{REPO}@{digest}", *target)
    assert code == 0 and out == f"{REPO}@{digest}: scanned: {expected}\n", err
    assert registry.scanning.record(REPO, digest).status == "complete"


def test_vulns_table_sorted_by_severity_and_the_ci_gate(capsys, api, registry, target):
    digest, report = push_and_scan(api, registry, REPO)
    code, out, err = run(capsys, "vulns", f"{REPO}:1.0", *target)
    assert code == 0, err  # no --severity: the report was read, exit 0 whatever it holds
    for heading in ("ID", "SEVERITY", "PACKAGE", "INSTALLED", "FIXED IN", "SUMMARY"):
        assert heading in out
    assert f"{REPO}@{digest}" in out
    lines = [line for line in out.splitlines() if any(f.id in line for f in report.findings)]
    assert len(lines) >= len({f.id for f in report.findings}) >= 1
    ranks = [
        max(i for i, level in enumerate(("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")) if level in line)
        for line in lines
    ]
    assert ranks == sorted(ranks, reverse=True)  # most severe first

    worst = worst_severity(report)
    code, out, err = run(capsys, "vulns", f"{REPO}:1.0", "--severity", worst.lower(), *target)
    assert code == 1, err  # findings at or above: the gate trips
    shown = report.at_or_above(worst)
    assert all(f.id in out for f in shown)
    assert not any(
        f.id in out for f in report.findings if f not in shown and f.id not in {s.id for s in shown}
    )

    if worst != "CRITICAL":
        code, out, err = run(capsys, "vulns", f"{REPO}:1.0", "--severity", "CRITICAL", *target)
        assert code == 0 and "0 vulnerabilities at or above CRITICAL" in out, err

    code, out, err = run(capsys, "vulns", f"{REPO}:1.0", "--json", "--severity", worst, *target)
    assert code == 1, err
    document = json.loads(out)
    assert document["digest"] == digest and document["severity"] == worst
    assert {f["id"] for f in document["report"]["findings"]} == {f.id for f in shown}
    assert document["counts"] == report.counts()


def test_vulns_of_an_image_not_scanned_says_so_with_exit_2(capsys, api, registry, target):
    push_image(api, REPO, make_image(), "raw")
    code, out, err = run(capsys, "vulns", f"{REPO}:raw", "--severity", "LOW", *target)
    assert (code, out) == (2, "")
    assert err.startswith(f"skyport vulns: {REPO}:raw: ") and "not been scanned yet" in err
    assert err.count("\n") == 1


def test_sbom_to_stdout_and_to_a_file(capsys, api, registry, target, tmp_path):
    digest, _ = push_and_scan(api, registry, REPO)
    stored = registry.scanning.sbom(REPO, digest)
    code, out, err = run(capsys, "sbom", f"{REPO}:1.0", *target)
    assert code == 0, err
    assert json.loads(out) == json.loads(stored)
    path = tmp_path / "sbom.json"
    code, out, err = run(capsys, "sbom", f"{REPO}@{digest}", "--output", str(path), *target)
    assert code == 0 and out == "" and str(path) in err
    assert path.read_bytes() == stored


def test_on_the_served_registry(capsys, api, registry, tmp_path, monkeypatch):
    digest, report = push_and_scan(api, registry, REPO)
    write_served_state(registry.settings, tmp_path, monkeypatch)
    code, out, err = run(capsys, "vulns", f"{REPO}:1.0", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["digest"] == digest
    assert sorted(f["id"] for f in document["report"]["findings"]) == sorted(f.id for f in report.findings)


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("", "invalid image reference"),
        ("team/app:", "invalid image reference"),
        ("team/app@", "invalid image reference"),
        ("team app:1", "invalid image reference"),
        ("team/app:1\n2", "invalid image reference"),
        ("Team/App:1", "invalid repository name"),
        ("team/../x:1", "invalid repository name"),
        ("localhost:5000/team/app:1", "invalid repository name"),
        ("team/app@sha256:zz", "digest"),
        ("team/app@sha256:" + "\u0661" * 64, "digest"),
        ("team/app:" + "a" * 200, "manifest unknown"),
        ("team/app:nope", "manifest unknown"),
        ("nothing/here:1", "repository name not known"),
    ],
)
@pytest.mark.parametrize("command", ["scan", "sbom", "vulns"])
def test_bad_or_unknown_references_get_one_clear_line(capsys, api, target, command, ref, says):
    push_image(api, REPO, make_image(), "1.0")
    code, out, err = run(capsys, command, ref, *target)
    assert code == (2 if command == "vulns" else 1)
    assert out == "" and err.startswith(f"skyport {command}: ") and err.count("\n") == 1
    assert says in err.lower(), err


def test_no_registry_to_work_on(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SKYPORT_STATE_DIR", str(tmp_path / "none"))
    code, out, err = run(capsys, "vulns", "team/app:1")
    assert code == 2 and out == "" and "no registry to administer" in err


def test_vulns_and_sbom_of_an_index_one_table_per_platform(capsys, api, registry, target):
    digest, report = push_and_scan(api, registry, REPO)
    second, _ = push_and_scan(api, registry, REPO, "alpine", ALPINE_NODE)
    children = [(digest, "amd64"), (second, "arm64")]
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": child,
                    "size": registry.manifests.resolve(REPO, child).size,
                    "platform": {"os": "linux", "architecture": arch},
                }
                for child, arch in children
            ],
        }
    ).encode()
    assert put_manifest(api, REPO, "multi", index, OCI_INDEX).status_code == 201
    code, out, err = run(capsys, "vulns", f"{REPO}:multi", *target)
    assert code == 0, err
    assert f"{REPO}@{digest} (linux/amd64): " in out and f"{REPO}@{second} (linux/arm64): " in out
    assert out.count("┃ ID") == sum(1 for d in (digest, second) if registry.scanning.report(REPO, d).findings)
    code, out, err = run(capsys, "sbom", f"{REPO}:multi", *target)
    assert code == 1 and "name a platform" in err and "linux/amd64" in err
    code, out, err = run(capsys, "sbom", f"{REPO}:multi", "--platform", "linux/arm64", *target)
    assert code == 0 and json.loads(out) == json.loads(registry.scanning.sbom(REPO, second))
