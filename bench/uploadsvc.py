"""Section "uploads": skopeo pushing one big layer through the upload service, against
skopeo pushing the same image straight to ``make run`` (issue 10; goal: within 10 %).

"Through the upload service" is the deployed topology run locally, as
``SKYPORT_GATEWAY=lambda SKYPORT_UPLOAD_SERVICE=on make run`` serves it: POST through the
local API Gateway and the Lambda handler, which answers a Location on the upload
service; the PATCH of the whole layer and the closing PUT go to the upload service
(uvicorn, no body limit). "Straight" is ``make run`` as it starts by default: the ASGI
app on uvicorn, every request to it. Both on the run's one moto server, each with its
own bucket and table; runs interleave, the order rotating, so drift on the machine
weighs on both alike. Each run pushes to a new repository (skopeo keeps no memory of
earlier runs: clients.Skopeo), so every run uploads the whole layer.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from .clients import Skopeo
from .images import build_layout
from .profiles import Profile, human
from .services import start_skyport

GOAL = 1.10  # through the upload service at most 10 % slower than straight


def row_name(profile: Profile) -> str:
    return f"skopeo push of 1 layer of {human(profile.big_layer)}: through the upload service vs straight"


def run(profile: Profile, work: Path, endpoint: str, skopeo: Skopeo, log: Callable[[str], None]) -> dict:
    layout = build_layout(work / "img-uploadsvc", {"1": [profile.big_layer]})
    warmup = build_layout(work / "img-uploadsvc-warmup", {"1": [4096]})
    name = row_name(profile)
    samples: dict[str, list[float]] = {"uploadsvc": [], "straight": []}
    registries = [
        start_skyport(work, endpoint, "skyport-uploadsvc", upload_service=True, label="uploadsvc"),
        start_skyport(work, endpoint, "skyport-straight", label="straight"),
    ]
    try:
        # One small push each first, not measured: the first request of a process pays for
        # imports and clients (the Lambda handler's cold start), which is not this row's subject.
        for reg in registries:
            skopeo.copy(warmup.ref(warmup.tags[0]), f"docker://{reg.host}/bench/up-warmup:1")
        for run in range(profile.runs):
            for reg in registries[run % 2 :] + registries[: run % 2]:
                seconds = skopeo.copy(layout.ref(layout.tags[0]), f"docker://{reg.host}/bench/up-r{run}:1")
                samples[reg.label].append(seconds)
                log(f"  {name[:48]:<48} {reg.label:<10} run {run + 1}/{profile.runs}  {seconds:7.2f} s")
    finally:
        for reg in registries:
            reg.process.stop()
    through, straight = statistics.median(samples["uploadsvc"]), statistics.median(samples["straight"])
    ratio = through / straight
    return {
        "name": name,
        "uploadsvc_s": round(through, 3),
        "straight_s": round(straight, 3),
        "ratio": round(ratio, 3),
        "goal_ratio": GOAL,
        "within_goal": ratio <= GOAL,
        "runs": profile.runs,
        "samples_s": {label: [round(t, 3) for t in times] for label, times in samples.items()},
    }


def render(row: dict) -> list[str]:
    verdict = "within" if row["within_goal"] else "NOT within"
    return [
        "Upload service (skopeo, median of runs)",
        f"  {row['name']}",
        f"    through the upload service {row['uploadsvc_s']:8.2f} s   straight to make run "
        f"{row['straight_s']:8.2f} s   ratio {row['ratio']:.3f} ({verdict} the {row['goal_ratio']:.2f} goal)",
    ]
