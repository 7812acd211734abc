"""`make bench` in miniature: the tiny profile runs end to end and writes well-formed results.

No timing is asserted (the figures of a tiny run mean nothing); this only keeps the
bench scripts from rotting. It needs skopeo and Distribution (`docker-registry`),
as the real bench does; `make test` installs both (scripts/install-system-deps.sh),
and the test skips, saying so, only where they could not be installed (under
CI=true it fails, saying so: tests/machine.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from machine import cannot_run

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240


def _needs_tools() -> None:
    missing = [tool for tool in ("skopeo", "docker-registry") if shutil.which(tool) is None]
    if missing:
        cannot_run(f"{', '.join(missing)} not installed: run `bash bench/setup.sh` as root")


def _run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    return result


@pytest.mark.e2e
def test_tiny_bench_writes_results(tmp_path: Path) -> None:
    _needs_tools()
    out = tmp_path / "results"
    result = _run("-m", "bench", "--profile", "tiny", "--out", str(out), "--workdir", str(tmp_path))

    latest = json.loads((out / "latest.json").read_text())
    dated = [p for p in out.glob("*.json") if p.name != "latest.json"]
    assert len(dated) == 1 and json.loads(dated[0].read_text()) == latest

    assert latest["profile"]["name"] == "tiny"
    rows = latest["rows"]
    assert len(rows) == 7
    for row in rows:
        assert {"name", "skyport_s", "distribution_s", "ratio"} <= row.keys()
        assert row["skyport_s"] > 0 and row["distribution_s"] > 0 and row["distribution_fs_s"] > 0
        assert row["ratio"] == pytest.approx(row["skyport_s"] / row["distribution_s"], rel=0.01)

    calls = {row["operation"]: row for row in latest["aws_calls"]["rows"]}
    for operation in (
        "GET manifest by tag",
        "GET manifest by digest",
        "HEAD blob",
        "GET blob (307 to presigned S3 URL)",
        "HEAD blob (warm)",
        "GET blob (warm)",
        "GET tags list",
        "GET catalog page (n=100)",
        "push blob in 1 request (POST ?digest=)",
        "PUT manifest (inline, new tag)",
    ):
        assert operation in calls
    assert any(name.startswith("push blob in 4 MiB chunks") for name in calls)
    assert calls["GET manifest by tag"]["dynamodb_calls"] >= 1
    assert calls["GET blob (307 to presigned S3 URL)"]["s3_presigned_urls"] == 1
    # Blob links cached by the process (skyport/blob_cache.py): a warm HEAD/GET reads nothing.
    assert calls["HEAD blob (warm)"]["dynamodb_calls"] == calls["GET blob (warm)"]["dynamodb_calls"] == 0
    assert calls["GET blob (warm)"]["s3_presigned_urls"] == 1
    assert all(isinstance(row["s3_calls"], int) for row in calls.values())

    cases = latest["memory"]["cases"]
    assert len(cases) == 3
    for case in cases:
        assert case["skyport"]["peak_rss_bytes"] >= case["skyport"]["idle_rss_bytes"] > 0

    pull_through = latest["pull_through"]  # issue 13: bench/pull_through.py
    assert "error" not in pull_through, pull_through["error"]
    for key in ("skyport_cold_s", "skyport_warm_s", "proxy_cold_s", "proxy_warm_s"):
        assert pull_through[key] > 0
    assert "Pull-through cache: Skyport vs Distribution proxy mode" in result.stdout

    assert "skipped" in latest["lambda"]
    from bench.report import markdown

    assert len(markdown(latest).splitlines()) == 2 + len(rows)
    for title in ("1. Push and pull wall time", "2. AWS calls per operation", "3. Memory", "4. Lambda"):
        assert title in result.stdout
    # `python -m bench.report` prints a results file again: every section it holds.
    reprinted = _run("-m", "bench.report", str(out / "latest.json")).stdout
    assert "Pull-through cache: Skyport vs Distribution proxy mode" in reprinted
    assert "error" not in latest["scan"], latest["scan"]
    assert "Scan (issue 14)" in reprinted and "Scan (issue 14)" in result.stdout


@pytest.mark.e2e
def test_hotspots_runs(tmp_path: Path) -> None:
    _needs_tools()
    result = _run("-m", "bench.hotspots", "--requests", "10", "--rate", "100", "--out", str(tmp_path))
    figures = json.loads((tmp_path / "hotspots.json").read_text())
    assert set(figures["latency"]["HEAD blob"]) == {"skyport", "distribution", "distribution-fs"}
    assert "per request, median of 10" in result.stdout


def test_lambda_figures_are_read_from_the_coldstart_output() -> None:
    from bench.lambda_section import parse, structured

    text = """cold start, fresh `python3.12.1 -S` on the Lambda layout (.pyc), 5 runs, ms:
                                                 import+init   + boto3 clients
  floor (boto3+fastapi+mangum+powertools)     1014.4 / 908.7   1224.8 / 1142.9
  skyport_api.handler                         1100.0 / 950.5   1300.2 / 1200.1
  ratio handler / floor                                         1.146 /  1.070  (target <= 1.15)

per request, in process, ms:
                      framework  +powertools   skyport  above framework
  GET blob (307)            0.268        0.437     1.281            1.013
"""
    figures = parse(text)
    assert figures == {
        "floor (boto3+fastapi+mangum+powertools)": [1014.4, 908.7, 1224.8, 1142.9],
        "skyport_api.handler": [1100.0, 950.5, 1300.2, 1200.1],
        "ratio handler / floor": [1.146, 1.07],
        "GET blob (307)": [0.268, 0.437, 1.281, 1.013],
    }
    named = structured(figures)
    assert named["cold_start_ms"]["handler"]["with_clients_median"] == 1300.2
    assert named["cold_start_ms"]["floor"]["import_init_min"] == 908.7
    assert named["ratio"]["median"] == 1.146
    assert named["per_request_ms"]["GET blob (307)"]["above_framework"] == 1.013


def test_profile_summary_reads_py_spy_raw_stacks() -> None:
    from bench.hotspots import summarize_profile

    raw = (
        'process 1:"python";thread (0x1);run (threading.py:1);'
        "_Table.get (skyport/storage/dynamodb.py:129);_make_api_call (botocore/client.py:1076) 30\n"
        'process 1:"python";thread (0x1);run (threading.py:1);'
        "_Table.get (skyport/storage/dynamodb.py:129);recv_into (socket.py:700) 10\n"
        'process 1:"python";thread (0x2);handle (uvicorn/protocols/http/h11_impl.py:10) 10\n'
    )
    summary = summarize_profile(raw)
    assert summary["samples"] == 50
    assert dict(summary["self_by_package"]) == {"botocore": 30, "socket": 10, "uvicorn": 10}
    assert ("_Table.get (skyport/storage/dynamodb.py:129)", 40) in summary["inclusive_top"]
    assert dict(summary["split"]) == {
        "storage call (botocore, to moto and back)": 40,
        "HTTP server and framework (uvicorn, Starlette, FastAPI)": 10,
    }
