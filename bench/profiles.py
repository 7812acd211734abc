"""How big and how many: the full benchmark, and a tiny one that only proves the scripts run."""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Profile:
    name: str
    runs: int  # each push/pull row is the median of this many runs ...
    short_runs: int  # ... but this many for the rows of the 3-layer image (seconds each)
    multi_layers: tuple[int, ...]  # the "3 layers" image
    big_layer: int  # the "one big layer" image
    tiny_images: int  # pushed, then pulled, one after another
    tiny_layer: int
    parallel_pulls: int  # concurrent pulls of the 3-layer image
    memory_single: int  # one client streams a layer of this size
    memory_streams: int  # ... then this many clients at once
    memory_stream_size: int  # ... each with a layer of this size
    memory_distribution: bool  # also measure Distribution's RSS (reference)
    calls_blob: int  # blob size for the AWS-calls-per-operation section
    calls_chunk: int  # chunk size of the chunked push in that section
    lambda_runs: int  # bench/coldstart.py --runs (0: section skipped)
    lambda_requests: int  # bench/coldstart.py --requests
    timeout: float  # seconds any single client command may take
    fresh_backends: bool = True  # an emptied moto and new registries per group of scenarios
    # Each pushed image of the 3-layer and big-layer rows is pulled this many times, the
    # registries taking turns: a pull costs a second or less, so its row gets more samples
    # than its push row for little time, and its median moves less with the machine.
    pulls_per_push: int = 1


FULL = Profile(
    name="full",
    runs=3,
    short_runs=5,
    multi_layers=(5 * MiB, 20 * MiB, 40 * MiB),
    big_layer=300 * MiB,
    tiny_images=200,
    tiny_layer=1 * KiB,
    parallel_pulls=8,
    memory_single=1 * GiB,
    memory_streams=4,
    memory_stream_size=256 * MiB,
    memory_distribution=False,  # --memory-reference: +3 min
    calls_blob=20 * MiB,
    calls_chunk=4 * MiB,
    lambda_runs=5,
    lambda_requests=1000,
    timeout=600.0,
    pulls_per_push=3,
)

# Seconds, not minutes: run by tests/bench so the scripts never rot. No figure means anything.
TINY = Profile(
    name="tiny",
    runs=1,
    short_runs=1,
    multi_layers=(64 * KiB, 128 * KiB, 256 * KiB),
    big_layer=1 * MiB,
    tiny_images=2,
    tiny_layer=1 * KiB,
    parallel_pulls=2,
    memory_single=2 * MiB,
    memory_streams=2,
    memory_stream_size=1 * MiB,
    memory_distribution=False,
    calls_blob=10 * MiB,
    calls_chunk=4 * MiB,
    lambda_runs=0,
    lambda_requests=0,
    timeout=120.0,
    fresh_backends=False,
)

PROFILES = {p.name: p for p in (FULL, TINY)}


def human(size: int) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"
