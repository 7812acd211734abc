"""Section 1: push and pull wall time with skopeo, every registry, interleaved runs.

Runs interleave: for each scenario and each run, every registry takes its turn,
the order rotating from run to run, so drift on the machine (other load, moto's
growing store) spreads over all of them alike; the tiny images interleave image
by image. Each run pushes to a new
repository; skopeo keeps no memory of earlier runs (see clients.Skopeo). Each group of
scenarios gets an emptied moto server and new registry processes.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .clients import Skopeo
from .images import Layout
from .profiles import Profile, human
from .services import Registry


@dataclass
class Images:
    multi: Layout  # the 3-layer image
    big: Layout  # one big layer
    tiny: Layout  # many tiny images, one tag each


Samples = dict[str, dict[str, list[float]]]  # row name -> registry label -> seconds


def _rotate(items: list, n: int) -> list:
    n %= len(items)
    return items[n:] + items[:n]


def names(profile: Profile) -> dict[str, str]:
    layers = "+".join(str(s // 1024**2) if s >= 1024**2 else human(s) for s in profile.multi_layers)
    unit = " MiB" if all(s >= 1024**2 for s in profile.multi_layers) else ""
    return {
        "push_multi": f"push 3 layers ({layers}{unit})",
        "pull_multi": f"pull 3 layers ({layers}{unit})",
        "push_big": f"push 1 layer of {human(profile.big_layer)}",
        "pull_big": f"pull 1 layer of {human(profile.big_layer)}",
        "push_tiny": f"push {profile.tiny_images} tiny images, one after another",
        "pull_tiny": f"pull {profile.tiny_images} tiny images, one after another",
        "pull_parallel": f"{profile.parallel_pulls} parallel pulls of the 3-layer image",
    }


def run(
    profile: Profile,
    environment: Callable[[str], AbstractContextManager[list[Registry]]],
    skopeo: Skopeo,
    images: Images,
    log: Callable[[str], None],
) -> Samples:
    """``environment(name)`` starts a fresh moto and the registries on it, for one group
    of scenarios, so that no group inherits another's stored data."""
    row = names(profile)
    samples: Samples = defaultdict(lambda: defaultdict(list))

    def record(key: str, reg: Registry, seconds: float, run: int, runs: int) -> None:
        samples[row[key]][reg.label].append(seconds)
        log(f"  {row[key]:<48} {reg.label:<16} run {run + 1}/{runs}  {seconds:7.2f} s")

    def pull_once(reg: Registry, ref: str) -> float:
        target = skopeo.scratch()
        try:
            return skopeo.copy(f"docker://{reg.host}/{ref}", f"dir:{target}")
        finally:
            skopeo.drop(target)

    def single(key: str, layout: Layout, registries: list[Registry], runs: int) -> None:
        pulls = profile.pulls_per_push
        for run in range(runs):
            ref = f"bench/{key}-r{run}:1"
            for reg in _rotate(registries, run):
                record(
                    f"push_{key}",
                    reg,
                    skopeo.copy(layout.ref(layout.tags[0]), f"docker://{reg.host}/{ref}"),
                    run,
                    runs,
                )
            # Then the pulls of what this run pushed, the order rotating from pull to pull.
            for pull in range(pulls):
                for reg in _rotate(registries, run * pulls + pull):
                    record(f"pull_{key}", reg, pull_once(reg, ref), run * pulls + pull, runs * pulls)

    with environment("multi") as registries:
        single("multi", images.multi, registries, profile.short_runs)
        for run in range(profile.short_runs):
            for reg in _rotate(registries, run):
                targets = [skopeo.scratch() for _ in range(profile.parallel_pulls)]
                try:
                    seconds = skopeo.copy_parallel(
                        [(f"docker://{reg.host}/bench/multi-r{run}:1", f"dir:{t}") for t in targets]
                    )
                finally:
                    for target in targets:
                        skopeo.drop(target)
                record("pull_parallel", reg, seconds, run, profile.short_runs)
    with environment("big") as registries:
        single("big", images.big, registries, profile.runs)
    with environment("tiny") as registries:
        # Interleaved image by image: each registry still takes the images one after
        # another, but a burst of load on the machine (tens of seconds) weighs on every
        # registry alike instead of on whichever one had its turn then.
        for run in range(profile.runs):
            push: dict[str, float] = defaultdict(float)
            pull: dict[str, float] = defaultdict(float)
            refs = [f"bench/tiny-r{run}-{i}:1" for i in range(len(images.tiny.tags))]
            for i, (tag, ref) in enumerate(zip(images.tiny.tags, refs, strict=True)):
                for reg in _rotate(registries, run + i):
                    push[reg.label] += skopeo.copy(images.tiny.ref(tag), f"docker://{reg.host}/{ref}")
            for i, ref in enumerate(refs):
                for reg in _rotate(registries, run + i):
                    pull[reg.label] += pull_once(reg, ref)
            for reg in registries:
                record("push_tiny", reg, push[reg.label], run, profile.runs)
            for reg in registries:
                record("pull_tiny", reg, pull[reg.label], run, profile.runs)
    return samples


def rows(profile: Profile, samples: Samples) -> list[dict]:
    """The JSON rows: medians, the ratio Skyport / Distribution (S3), and every sample."""
    out = []
    order = ["push_multi", "pull_multi", "push_big", "pull_big", "push_tiny", "pull_tiny", "pull_parallel"]
    row = names(profile)
    for key in order:
        name = row[key]
        if name not in samples:
            continue
        per = samples[name]
        med = {label: statistics.median(times) for label, times in per.items()}
        sky, dist, fs = med.get("skyport"), med.get("distribution"), med.get("distribution-fs")
        out.append(
            {
                "name": name,
                # Seconds keep microseconds: the tiny profile's medians are a few
                # milliseconds, where rounding to 3 places would skew the ratio.
                "skyport_s": round(sky, 6) if sky is not None else None,
                "distribution_s": round(dist, 6) if dist is not None else None,
                "ratio": round(sky / dist, 3) if sky and dist else None,
                "distribution_fs_s": round(fs, 6) if fs is not None else None,
                "ratio_fs": round(sky / fs, 3) if sky and fs else None,
                "runs": len(per.get("skyport", [])),
                "samples_s": {label: [round(t, 3) for t in times] for label, times in per.items()},
            }
        )
    return out
