"""Section 4: the Lambda figures, from the Lambda work's own script (bench/coldstart.py).

That script lays the function out as Lambda does and times cold starts in fresh
``python3.12 -S`` processes against the import floor of the dependencies, then the
per-request cost in process. Here it is run as it is, its output kept verbatim and
its figures read into the JSON: every indented line by its label (``figures``), and
the known lines under names (``cold_start_ms``, ``ratio``, ``per_request_ms``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "coldstart.py"
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def parse(text: str) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line.startswith("  "):
            continue
        words = line.split("(target")[0].split()
        first = next((i for i, w in enumerate(words) if NUMBER.match(w)), None)
        if not first:  # no figures, or no label before them
            continue
        numbers = [float(w) for w in words[first:] if NUMBER.match(w)]
        figures[" ".join(words[:first])] = numbers
    return figures


COLD_COLUMNS = ("import_init_median", "import_init_min", "with_clients_median", "with_clients_min")
REQUEST_COLUMNS = ("framework", "framework_powertools", "skyport", "above_framework")


def structured(figures: dict[str, list[float]]) -> dict:
    """The figures coldstart.py prints, under names; lines it no longer prints are left out."""
    out: dict = {"cold_start_ms": {}, "per_request_ms": {}}
    for label, numbers in figures.items():
        if label.startswith("floor") and len(numbers) == len(COLD_COLUMNS):
            out["cold_start_ms"]["floor"] = dict(zip(COLD_COLUMNS, numbers, strict=True))
        elif label.startswith("skyport_api.handler") and len(numbers) == len(COLD_COLUMNS):
            out["cold_start_ms"]["handler"] = dict(zip(COLD_COLUMNS, numbers, strict=True))
        elif label.startswith("ratio") and len(numbers) == 2:
            out["ratio"] = {"median": numbers[0], "min": numbers[1], "target": 1.15}
        elif label.startswith(("GET", "HEAD", "PUT", "POST")) and len(numbers) == len(REQUEST_COLUMNS):
            out["per_request_ms"][label] = dict(zip(REQUEST_COLUMNS, numbers, strict=True))
    return out


def run(runs: int, requests: int, timeout: float = 600) -> dict:
    if not SCRIPT.exists():
        return {"skipped": "bench/coldstart.py is missing"}
    try:
        out = subprocess.run(
            [sys.executable, str(SCRIPT), "--runs", str(runs), "--requests", str(requests)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=SCRIPT.parents[1],
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"bench/coldstart.py did not finish in {timeout:.0f} s"}
    if out.returncode != 0:
        return {
            "skipped": f"bench/coldstart.py exited with {out.returncode}: "
            f"{(out.stderr or out.stdout).strip()[-800:]}"
        }
    figures = parse(out.stdout)
    return {
        "command": f"bench/coldstart.py --runs {runs} --requests {requests}",
        "text": out.stdout.rstrip(),
        "figures": figures,
        **structured(figures),
    }
