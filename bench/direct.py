"""Section "direct": a single-layer image pushed with ``skyport push`` (parts straight to
S3, verified by the registry) into Skyport, against ``skopeo copy`` into Distribution
(S3 driver), both on the run's one moto server; and what the verification costs.

Runs interleave, the order alternating; each run on an emptied moto server with new
registry processes, so both registries take the whole layer every time. The skyport push
time is the whole command: reading the layout, the parts, the registry's SHA-256 check
(the client waits for it), and the manifest. Verification is then timed alone, in
process, on the pushed object: ``DirectUploadService.hash_object`` (ranged GETs,
8 at a time, into one hasher, as deployed) and one GetObject stream (as locally),
and against hashing the same bytes in memory (the CPU floor).
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .clients import Skopeo
from .images import build_layout
from .profiles import GiB, MiB, Profile, human
from .services import AWS_KEYS, REGION, Backend, child_env, start_distribution, start_skyport

RANGED_READERS = 8  # what template.yaml gives the deployed verifier (SKYPORT_VERIFY_READERS)
ROW = "push 1 single-layer image of {size}: skyport push vs skopeo into Distribution"


def _size(profile: Profile) -> int:
    return 1 * GiB if profile.name == "full" else 2 * MiB


def run(profile: Profile, work: Path, backend: Backend, skopeo: Skopeo, log: Callable[[str], None]) -> dict:
    size = _size(profile)
    t = time.monotonic()
    layout = build_layout(work / "img" / "direct", {"1": [size]})
    log(f"bench: direct section image ({human(size)}) built in {time.monotonic() - t:.1f} s")
    samples: dict[str, list[float]] = {"skyport push": [], "skopeo → distribution": []}
    state = work / "direct-push-state.json"
    verification: dict = {}
    for run in range(profile.runs):
        # Each run on an emptied moto with new registries: the registry that already holds
        # the layer would link it (skyport push) instead of taking its bytes again.
        backend.reset()
        skyport = start_skyport(work, backend.endpoint, f"skyport-direct-{run}")
        distribution = start_distribution(work, backend.endpoint, f"distribution-direct-{run}")
        try:
            ref = f"bench/direct-r{run}:1"
            order = ["skyport", "distribution"] if run % 2 == 0 else ["distribution", "skyport"]
            for who in order:
                if who == "skyport":
                    seconds = _skyport_push(layout.ref("1"), f"{skyport.host}/{ref}", state, profile.timeout)
                    samples["skyport push"].append(seconds)
                else:
                    seconds = skopeo.copy(layout.ref("1"), f"docker://{distribution.host}/{ref}")
                    samples["skopeo → distribution"].append(seconds)
                log(f"  direct push {human(size):<8} {who:<13} run {run + 1}/{profile.runs} {seconds:7.2f} s")
            if run == profile.runs - 1:
                verification = _verification(
                    backend.endpoint, f"skyport-direct-{run}", f"bench/direct-r{run}", layout, size
                )
        finally:
            skyport.process.stop()
            distribution.process.stop()
    medians = {label: statistics.median(values) for label, values in samples.items()}
    sky, dist = medians["skyport push"], medians["skopeo → distribution"]
    return {
        "name": ROW.format(size=human(size)),
        "size_bytes": size,
        "median_s": medians,
        "speedup": round(dist / sky, 2) if sky else None,
        "samples_s": samples,
        "verification": verification,
    }


def _skyport_push(source: str, target: str, state: Path, timeout: float) -> float:
    argv = [sys.executable, "-m", "skyport_cli", "push", "--quiet", "--jobs", "8", source, target]
    started = time.monotonic()
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=child_env(SKYPORT_PUSH_STATE=str(state))
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"skyport push failed: {result.stderr[-2000:]}")
    return seconds


def _verification(endpoint: str, name: str, repository: str, layout, size: int) -> dict:
    """Seconds to hash the pushed layer as the verifier does, and two references."""
    import json
    import os

    from skyport import direct_uploads
    from skyport.config import Settings
    from skyport.registry import Registry

    settings = Settings(
        bucket=f"{name}-blobs",
        table=f"{name}-metadata",
        region=REGION,
        s3_endpoint=endpoint,
        dynamodb_endpoint=endpoint,
    )
    for key, value in AWS_KEYS.items():  # moto's keys, as the registries started here get
        os.environ.setdefault(key, value)
    registry = Registry(settings)
    manifest = json.loads((layout.path / "index.json").read_text())["manifests"][0]["digest"]
    body = (layout.path / "blobs" / "sha256" / manifest.split(":", 1)[1]).read_bytes()
    digest = json.loads(body)["layers"][0]["digest"]
    record = registry.blobs.stat(repository, digest)
    started = time.monotonic()
    assert registry.direct_uploads.hash_object(record.key, record.size) == digest  # settings: 1 stream
    sequential = time.monotonic() - started
    ranged_registry = Registry(dataclasses.replace(settings, verify_readers=RANGED_READERS))
    started = time.monotonic()
    assert ranged_registry.direct_uploads.hash_object(record.key, record.size) == digest
    ranged = time.monotonic() - started
    data = (layout.path / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
    started = time.monotonic()
    hashlib.sha256(data).hexdigest()
    in_memory = time.monotonic() - started
    del data

    def rate(seconds: float) -> float:
        return round(size / MiB / seconds, 1) if seconds else 0.0

    return {
        "readers": RANGED_READERS,
        "range_bytes": direct_uploads.VERIFY_RANGE,
        "ranged_s": round(ranged, 2),
        "ranged_mib_s": rate(ranged),
        "sequential_s": round(sequential, 2),
        "sequential_mib_s": rate(sequential),
        "in_memory_s": round(in_memory, 2),
        "in_memory_mib_s": rate(in_memory),
    }


def render(section: dict) -> str:
    med = section["median_s"]
    verification = section["verification"]
    lines = [
        "Direct uploads (skyport push: parts straight to S3, SHA-256 verified by the registry)",
        f"  {section['name']}",
        f"    skyport push into Skyport          {med['skyport push']:7.2f} s (median)",
        f"    skopeo copy into Distribution (S3) {med['skopeo → distribution']:7.2f} s (median)",
        f"    speed-up                           {section['speedup']:.2f}x (goal: 2x)",
        f"  verification of that layer ({human(section['size_bytes'])}), read back from S3 and hashed:",
        f"    {verification['readers']} ranged GETs of {human(verification['range_bytes'])} at a time "
        f"{verification['ranged_s']:6.2f} s ({verification['ranged_mib_s']} MiB/s)",
        f"    one sequential GetObject          {verification['sequential_s']:6.2f} s "
        f"({verification['sequential_mib_s']} MiB/s)",
        f"    SHA-256 of the bytes in memory    {verification['in_memory_s']:6.2f} s "
        f"({verification['in_memory_mib_s']} MiB/s)",
    ]
    return "\n".join(lines)
