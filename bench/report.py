"""Plain-text tables for the terminal (and the README), and the JSON results."""

from __future__ import annotations

import json
from pathlib import Path

MiB = 1024 * 1024


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MiB:.1f} MiB"


# Why a row can be slower, from the profile (python -m bench.hotspots; bench/README.md).
WHY_SLOWER = {
    "pull": "warm blob HEAD/GET are answered from Skyport's process cache (skyport/blob_cache.py), "
    "as Distribution answers them from its in-memory blob-descriptor cache, so what is left "
    "per pull is the manifest's DynamoDB GetItem (Distribution reads S3 three times) and the "
    "bytes, which both registries redirect to the same moto; a pull row over 1.0x with "
    "overlapping runs is that moto's and the machine's noise (python -m bench.hotspots "
    "measures each request alone).",
    "push": "see bench/README.md (python -m bench.hotspots profiles the server).",
}


def _overlap(samples: dict) -> bool:
    sky, dist = samples.get("skyport"), samples.get("distribution")
    return bool(sky and dist and min(sky) <= max(dist))


def _spread(samples: list[float] | None) -> str:
    if not samples:
        return "-"
    return f"{min(samples):.2f}-{max(samples):.2f}"


def transfer(result: dict) -> list[str]:
    rows = []
    for r in result["rows"]:
        verdict = "-" if r["ratio"] is None else ("ok" if r["ratio"] <= 1.0 else "SLOWER")
        samples = r.get("samples_s", {})
        rows.append(
            [
                r["name"],
                _s(r["skyport_s"]),
                _s(r["distribution_s"]),
                _x(r["ratio"]),
                verdict,
                _s(r.get("distribution_fs_s")),
                f"{_spread(samples.get('skyport'))} | {_spread(samples.get('distribution'))}",
            ]
        )
    header = [
        "",
        "Skyport",
        "Distribution (S3)",
        "ratio",
        "<=1.0x",
        "Distribution (fs)",
        "runs, s (Skyport | Distribution)",
    ]
    runs = result["profile"]["runs"]
    short = result["profile"].get("short_runs", runs)
    how_many = (
        f"median of {runs} run{'s' if runs > 1 else ''}"
        if short == runs
        else f"median of {runs} runs, {short} for the 3-layer image"
    )
    pulls = result["profile"].get("pulls_per_push", 1)
    if pulls > 1:
        how_many += f"; each pushed image pulled {pulls} times"
    slower = [r for r in result["rows"] if r["ratio"] is not None and r["ratio"] > 1.0]
    footer = []
    for kind in ("push", "pull"):
        names = [r["name"] for r in slower if kind in r["name"]]
        if names:
            footer += ["", *_wrap(f"SLOWER: {'; '.join(names)}.")]
            overlap = [r["name"] for r in slower if kind in r["name"] and _overlap(r.get("samples_s", {}))]
            if overlap:
                footer += _wrap(
                    "Of these, the runs overlap (Skyport's fastest at or under "
                    f"Distribution's slowest) for: {'; '.join(overlap)}."
                )
            footer += _wrap(f"Why: {WHY_SLOWER[kind]}")
    return [
        f"1. Push and pull wall time with skopeo {result['machine']['skopeo']} "
        f"({how_many}; ratio = Skyport / Distribution on S3)",
        "",
        *_table(header, rows, {1, 2, 3, 5}),
        *footer,
    ]


def _wrap(text: str, width: int = 100, indent: str = "   ") -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)


def calls(section: dict) -> list[str]:
    rows = []
    for r in section["rows"]:
        budget = r["budget"]
        if budget is None:
            shown, verdict = "-", "-"
        else:
            parts = []
            if "dynamodb_calls" in budget:
                parts.append(f"DynamoDB {budget['dynamodb_calls']}")
            if "s3_calls" in budget:
                parts.append(f"S3 {budget['s3_calls']}")
            if budget.get("s3_get_object") == 0:
                parts.append("no read-back")
            shown, verdict = ", ".join(parts), "ok" if r["within_budget"] else "OVER"
        s3_ops = r["s3_ops"].replace("MultipartUpload", "MPU")
        rows.append(
            [
                r["operation"],
                str(r["dynamodb_calls"]),
                str(r["s3_calls"]),
                str(r.get("s3_presigned_urls", 0)),
                shown,
                verdict,
                f"{r['dynamodb_ops']} | {s3_ops}",
            ]
        )
    header = ["operation", "DynamoDB", "S3", "presigned", "budget", "", "requests (DynamoDB | S3)"]
    over = [r for r in section["rows"] if r["within_budget"] is False]
    footer = [
        f"   OVER: {r['operation']}: {', '.join(r['over'])} ({r['note']})"
        if r["note"]
        else f"   OVER: {r['operation']}: {', '.join(r['over'])}"
        for r in over
    ]
    return [
        "2. AWS calls per operation, counted at boto3: requests that leave the process "
        "(botocore before-send); presigned URLs are signed locally and send nothing",
        f"   part size {_mib(section['part_size'])}; pushed blob "
        f"{_mib(section['blob_size'])}; manifests up to "
        f"{section['inline_manifest_limit'] // 1024} KiB live inline in DynamoDB",
        "",
        *_table(header, rows, {1, 2, 3}),
        *([""] + footer if footer else []),
    ]


def memory(section: dict) -> list[str]:
    part = section["part_size"]
    rows = []
    for case in section["cases"]:
        sky = case["skyport"]
        budget = case["budget_bytes"]
        verdict = "ok" if sky["growth_bytes"] <= budget else "OVER"
        dist = case.get("distribution")
        streams = sky.get("streams", 1)
        rows.append(
            [
                case["name"],
                _mib(sky["idle_rss_bytes"]),
                _mib(sky["peak_rss_bytes"]),
                _mib(sky["growth_bytes"]),
                f"{sky['growth_bytes'] / part / streams:.1f}",
                f"<= {_mib(budget)}",
                verdict,
                f"{sky['seconds']:.1f} s",
                _mib(dist["growth_bytes"]) if dist else "-",
            ]
        )
    header = [
        "Skyport server process",
        "idle RSS",
        "peak RSS",
        "growth",
        "parts/stream",
        "budget",
        "",
        "push time",
        "Distribution growth",
    ]
    return [
        "3. Memory: peak RSS (VmHWM, and VmRSS every 10 ms) of the Skyport server while "
        "skopeo pushes; growth = peak - idle",
        f"   part size {_mib(part)}; budget {section['budget_parts_per_stream']} parts per "
        f"concurrent stream, whatever the layer size",
        "",
        *_table(header, rows, {1, 2, 3, 4, 5, 7}),
    ]


def lambda_(section: dict) -> list[str]:
    title = "4. Lambda: cold start and per-request cost (bench/coldstart.py, the Lambda work)"
    if "text" not in section:
        return [title, "", f"   not measured: {section.get('skipped', 'unknown reason')}"]
    return [title, f"   {section['command']}", "", *section["text"].splitlines()]


def render(result: dict) -> str:
    lines = [
        f"Skyport benchmark, profile {result['profile']['name']}, {result['started']}",
        f"machine: {result['machine']['cpus']} CPUs ({result['machine']['cpu']}), "
        f"Python {result['machine']['python']}, moto {result['machine']['moto']}, "
        f"Distribution {result['machine']['distribution']}, commit {result['machine']['commit']}",
        "",
    ]
    if result.get("rows"):
        lines += transfer(result) + [""]
    if result.get("aws_calls"):
        lines += calls(result["aws_calls"]) + [""]
    if result.get("memory"):
        lines += memory(result["memory"]) + [""]
    if result.get("pull_through"):  # issue 13: bench/pull_through.py
        from .pull_through import render as pull_through

        lines += pull_through(result["pull_through"]) + [""]
    if result.get("lambda"):
        lines += lambda_(result["lambda"]) + [""]
    # The sections after it print after the total, as `make bench` always printed them;
    # here too, so that `python -m bench.report` shows every section a results file holds.
    lines.append(f"total bench time {result['duration_s']:.0f} s")
    if result.get("direct"):
        from . import direct

        lines += ["", direct.render(result["direct"])]
    if result.get("upload_service"):
        from . import uploadsvc

        lines += ["", *uploadsvc.render(result["upload_service"])]
    if result.get("scan"):  # issue 14: bench/scanning.py
        from . import scanning

        lines += ["", *scanning.render(result["scan"])]
    return "\n".join(lines)


def write(result: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    latest = out / "latest.json"
    dated = out / f"{result['started'].replace(':', '').replace('-', '')}.json"
    latest.write_text(text)
    dated.write_text(text)
    return latest, dated


def markdown(result: dict) -> str:
    """Section 1 as a Markdown table, for bench/README.md and the top-level README."""
    lines = [
        "| | Skyport | Distribution (S3) | ratio | Distribution (fs) | runs, s (Skyport \\| Distribution) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        samples = r.get("samples_s", {})
        ratio = _x(r["ratio"])
        if r["ratio"] is not None and r["ratio"] > 1.0:
            ratio = f"**{ratio}** (slower)"
        lines.append(
            f"| {r['name']} | {_s(r['skyport_s'])} | {_s(r['distribution_s'])} "
            f"| {ratio} | {_s(r.get('distribution_fs_s'))} "
            f"| {_spread(samples.get('skyport'))} \\| "
            f"{_spread(samples.get('distribution'))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description="Print the tables of a results file again."
    )
    parser.add_argument(
        "results", nargs="?", type=Path, default=Path(__file__).resolve().parent / "results" / "latest.json"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="section 1 only, as a Markdown table (for the README)"
    )
    args = parser.parse_args(argv)
    result = json.loads(args.results.read_text())
    print(markdown(result) if args.markdown else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
