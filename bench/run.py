"""Entry point: ``python -m bench [--profile full|tiny] [--out DIR]``.

One standalone moto server process backs the whole run (so the bytes it stores are
never in a registry's RSS). On it: Skyport (``skyport serve`` with external
endpoints, its own bucket and table) and Distribution with its S3 driver
(redirects on, its own bucket); Distribution on its filesystem driver is a second
reference. The server is emptied (moto's reset API) before each group of
scenarios. All sections run in one invocation on the same machine; the Lambda
section runs bench/coldstart.py, which brings its own in-process moto.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import awscalls, lambda_section, memory, report, services, transfer, uploadsvc
from .clients import Skopeo
from .images import build_layout
from .profiles import PROFILES, human

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("transfer", "calls", "memory", "lambda", "direct", "uploads", "pullthrough")
SECTIONS += ("scan",)  # issue 14: bench/scanning.py, its own moto, no registry
MEMORY_BUDGET_PARTS = 4  # per concurrent stream: "a few part sizes"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def missing_tools() -> list[str]:
    return [tool for tool in ("skopeo", "docker-registry") if shutil.which(tool) is None]


def _machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import moto

        moto_version = moto.__version__
    except ImportError:
        moto_version = "unknown"
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        commit = (commit + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        commit = "unknown"
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "moto": moto_version,
        "skopeo": Skopeo.version(),
        "distribution": services.distribution_version(),
        "commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument(
        "--out",
        type=Path,
        help="where latest.json and the dated copy go (default: bench/results "
        "for the full profile, a temporary directory otherwise)",
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument("--workdir", type=Path, help="scratch space for images (default: TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--memory-reference",
        action="store_true",
        help="also measure Distribution's memory in section 3 (about 3 min more)",
    )
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.memory_reference:
        profile = dataclasses.replace(profile, memory_distribution=True)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    absent = missing_tools()
    if absent and sections & {"transfer", "memory", "direct", "uploads", "pullthrough"}:
        _log(
            f"bench: {', '.join(absent)} not installed; run `bash bench/setup.sh` as root "
            "(Debian packages skopeo and docker-registry)"
        )
        return 2
    out = args.out or (
        RESULTS if profile.name == "full" else Path(tempfile.mkdtemp(prefix="skyport-bench-results-"))
    )

    started_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="skyport-bench-", dir=args.workdir))
    result: dict = {
        "schema": 1,
        "profile": dict(vars(profile)),
        "started": started_at.isoformat().replace("+00:00", "Z"),
        "machine": _machine(),
        "rows": [],
    }
    try:
        _log(f"bench: profile {profile.name}, scratch {work}")
        skopeo = Skopeo(work / "skopeo", profile.timeout)
        if sections & {"transfer", "calls", "memory", "direct", "uploads", "pullthrough"}:
            # The one moto server of the run: every registry on S3 uses it, each with
            # its own bucket (and Skyport its own table); emptied between groups.
            with services.Backend(work) as backend:
                _log(f"bench: moto server at {backend.endpoint} (pid {backend.process.pid})")
                if "transfer" in sections:
                    result["rows"] = run_transfer(profile, work, backend, skopeo)
                if "calls" in sections:
                    _log("bench: section 2, AWS calls per operation")
                    backend.reset()
                    result["aws_calls"] = awscalls.run(backend.endpoint, profile)
                if "memory" in sections:
                    _log("bench: section 3, memory")
                    result["memory"] = run_memory(profile, work, backend, skopeo)
                if "direct" in sections:
                    from . import direct  # skyport push vs skopeo into Distribution (issue 10)

                    _log("bench: section direct, skyport push")
                    result["direct"] = direct.run(profile, work, backend, skopeo, _log)
                if "uploads" in sections:  # issue 10: bench/uploadsvc.py
                    _log("bench: section uploads, skopeo through the upload service vs straight")
                    backend.reset()
                    result["upload_service"] = uploadsvc.run(profile, work, backend.endpoint, skopeo, _log)
                if "pullthrough" in sections:  # issue 13: bench/pull_through.py
                    from . import pull_through

                    _log("bench: section pullthrough, Skyport's cache vs Distribution's proxy mode")
                    t = time.monotonic()
                    try:
                        result["pull_through"] = pull_through.run(profile, work, backend, skopeo, _log)
                    except Exception as exc:  # noqa: BLE001 - the row says why; the others stand
                        _log(f"bench: section pullthrough failed: {exc}")
                        result["pull_through"] = {"error": str(exc).splitlines()[0][:300]}
                    _log(f"bench: section pullthrough took {time.monotonic() - t:.0f} s")
        if "lambda" in sections:
            if profile.lambda_runs:
                _log("bench: section 4, Lambda cold start and per request (bench/coldstart.py)")
                t = time.monotonic()
                result["lambda"] = lambda_section.run(profile.lambda_runs, profile.lambda_requests)
                _log(f"bench: section 4 took {time.monotonic() - t:.0f} s")
            else:
                result["lambda"] = {"skipped": f"not in the {profile.name} profile"}
        if "scan" in sections:  # issue 14: bench/scanning.py
            from . import scanning

            _log("bench: section scan, scan_image + SBOM of an image in S3 (300 MiB of layers: full)")
            t = time.monotonic()
            try:
                result["scan"] = scanning.run(profile, work, _log)
            except Exception as exc:  # noqa: BLE001 - the row says why; the others stand
                _log(f"bench: section scan failed: {exc}")
                result["scan"] = {"error": str(exc).splitlines()[0][:300]}
            _log(f"bench: section scan took {time.monotonic() - t:.0f} s")
    finally:
        if args.keep:
            _log(f"bench: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    result["duration_s"] = round(time.monotonic() - started, 1)
    print(report.render(result), flush=True)
    latest, dated = report.write(result, out)
    print(f"\nresults: {latest} (and {dated.name})", flush=True)
    return 0


def run_transfer(profile, work: Path, backend: services.Backend, skopeo: Skopeo) -> list[dict]:
    """Section 1. With ``fresh_backends``, each group of scenarios gets an emptied moto and
    new registry processes; otherwise one set serves every group (the tiny profile)."""
    t = time.monotonic()
    images = transfer.Images(
        multi=build_layout(work / "img" / "multi", {"1": list(profile.multi_layers)}),
        big=build_layout(work / "img" / "big", {"1": [profile.big_layer]}),
        tiny=build_layout(
            work / "img" / "tiny", {f"t{i}": [profile.tiny_layer] for i in range(profile.tiny_images)}
        ),
    )
    _log(f"bench: images built in {time.monotonic() - t:.1f} s")
    _log("bench: section 1, push and pull with skopeo")
    t = time.monotonic()
    with contextlib.ExitStack() as stack:
        environment = functools.partial(services.registries, work, backend)
        if not profile.fresh_backends:
            shared = stack.enter_context(environment("all"))
            environment = lambda _name: contextlib.nullcontext(shared)  # noqa: E731
        samples = transfer.run(profile, environment, skopeo, images, _log)
    shutil.rmtree(work / "img", ignore_errors=True)
    _log(f"bench: section 1 took {time.monotonic() - t:.0f} s")
    return transfer.rows(profile, samples)


def run_memory(profile, work: Path, backend: services.Backend, skopeo: Skopeo) -> dict:
    """Section 3. Each case on an emptied moto and a new server process (Skyport, and
    Distribution with --memory-reference). The one-client case runs at two layer sizes
    (the small one is a layer of the concurrent case) to show whether growth follows the
    layer size."""
    part = services.skyport_part_size()
    t = time.monotonic()
    base = work / "mem"
    warmup = build_layout(base / "warmup", {"1": [4096]})
    many = [
        build_layout(base / f"stream-{i}", {"1": [profile.memory_stream_size]})
        for i in range(profile.memory_streams)
    ]
    plan = [
        (
            f"1 client, 1 layer of {human(profile.memory_single)}",
            [build_layout(base / "single", {"1": [profile.memory_single]})],
        )
    ]
    if profile.memory_stream_size != profile.memory_single:
        plan.append((f"1 client, 1 layer of {human(profile.memory_stream_size)}", many[:1]))
    plan.append((f"{len(many)} clients, {human(profile.memory_stream_size)} each", many))
    _log(f"bench: memory images built in {time.monotonic() - t:.1f} s")
    starters = {"skyport": services.start_skyport}
    if profile.memory_distribution:
        starters["distribution"] = services.start_distribution
    cases = []
    for name, layouts in plan:
        case: dict = {"name": name, "budget_bytes": MEMORY_BUDGET_PARTS * part * len(layouts)}
        for label, start in starters.items():
            backend.reset()
            tag = f"{label}-mem{len(cases)}"
            case[label] = memory.run_case(
                functools.partial(start, work, backend.endpoint), tag, skopeo, warmup, layouts
            )
            growth = case[label]["growth_bytes"] / 2**20
            _log(f"  {name:<32} {label:<13} growth {growth:7.1f} MiB, {case[label]['seconds']:.1f} s")
        cases.append(case)
    shutil.rmtree(base, ignore_errors=True)
    return {"part_size": part, "budget_parts_per_stream": MEMORY_BUDGET_PARTS, "cases": cases}
