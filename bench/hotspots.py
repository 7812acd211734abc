"""Where a Skyport pull request's time goes: latency next to Distribution, and a py-spy profile.

    .venv/bin/python -m bench.hotspots [--requests 300] [--out bench/results]

The push/pull rows where Skyport is slower than Distribution are the ones made of
many small requests (tiny images, one after another): the bytes of big layers come
from the same moto through the same kind of redirect for both, so per-request cost
is what is left. This tool measures it on the same set-up as ``make bench`` (one
standalone moto; Skyport and Distribution's S3 driver on it, Distribution on disk
beside them):

1. the median latency of each request a pull makes (``GET /v2/``, the manifest by
   tag and by digest, ``HEAD`` and ``GET`` of a blob), client to registry, the
   redirect not followed; and the median of one DynamoDB ``GetItem`` and one S3
   ``GetObject`` on this moto from a plain boto3 client (the backend's floor);
2. the CPU each registry process, and the moto process behind it, burns per request
   (``/proc/PID/stat``): on a machine short of CPU, that is what a request costs;
3. a py-spy profile of the Skyport server while it answers the requests a
   ``skopeo copy`` of a tiny image makes: the time on CPU by package of the leaf
   frame (where the CPU goes), and the functions most present on the stack;
4. the same latencies while 8 ``skopeo copy`` pull the 3-layer image from that
   registry at once (the bench's "parallel pulls" row), and a wall-clock py-spy
   profile (``--idle``) of Skyport meanwhile: of the time its threads spend inside
   a request's storage call, how much is waiting for moto's answer.

Writes ``hotspots.txt`` and ``hotspots.json`` into ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from . import services
from .clients import Skopeo
from .images import build_layout

ACCEPT = {
    "Accept": "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
}
# Where a leaf frame's file lives -> a name for the table.
PACKAGES = (
    ("skyport_api/", "skyport_api (routes)"),
    ("skyport/", "skyport (core)"),
    ("botocore/", "botocore"),
    ("boto3/", "boto3"),
    ("urllib3/", "urllib3"),
    ("http/client.py", "http.client"),
    ("fastapi/", "fastapi"),
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn"),
    ("anyio/", "anyio (thread hand-off)"),
    ("asyncio/", "asyncio"),
    ("concurrent/futures", "concurrent.futures"),
    ("threading.py", "threading"),
    ("logging/", "logging"),
    ("json/", "json"),
    ("dateutil/", "dateutil"),
    ("email/", "email (http.client headers)"),
    ("ssl.py", "ssl"),
    ("socket.py", "socket"),
    ("selectors.py", "selectors"),
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _median_ms(fn: Callable[[], object], n: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _package(frame: str) -> str:
    # py-spy raw frames read "function (path/file.py:line)".
    location = frame.rsplit(" (", 1)[-1]
    for needle, name in PACKAGES:
        if needle in location:
            return name
    return "other: " + location.split(":")[0].rstrip(")")[-40:]


# Frames on every stack of their thread (start-up, event loop, worker loop): left out of
# the inclusive list, which is there to show what the requests do.
GENERIC = (
    "<module>",
    "runpy",
    "threading.py",
    "skyport_cli/",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "concurrent/futures/thread.py",
    "botocore/context.py",
    "uvicorn/_compat.py",
    "WorkerThread.run (",
)


def summarize_profile(raw: str, top: int = 14) -> dict:
    """From py-spy's raw (collapsed) stacks: samples split by what the request is doing,
    by package of the leaf frame (self time), and the functions found on the most
    stacks (inclusive time)."""
    by_package: Counter = Counter()
    inclusive: Counter = Counter()
    split: Counter = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        by_package[_package(frames[-1])] += n
        for frame in set(frames):
            inclusive[frame] += n
        stack_text = ";".join(frames)
        if "skyport/storage/" in stack_text:
            split["storage call (botocore, to moto and back)"] += n
        elif "anyio/" in stack_text or "concurrent/futures" in stack_text:
            split["thread hand-off (anyio worker threads)"] += n
        elif "skyport/" in frames[-1] or "skyport_api/" in frames[-1]:
            split["Skyport's own code (self time), outside storage calls"] += n
        else:
            split["HTTP server and framework (uvicorn, Starlette, FastAPI)"] += n
    return {
        "samples": total,
        "split": [(name, n) for name, n in split.most_common()],
        "self_by_package": [(name, n) for name, n in by_package.most_common()],
        "inclusive_top": [
            (frame, n) for frame, n in inclusive.most_common() if not any(g in frame for g in GENERIC)
        ][:top],
    }


# Leaf functions of a thread blocked on a socket or a lock (py-spy names frames
# "Class.function (file:line)").
WAITING = {"recv_into", "readinto", "recv", "_read_status", "readline", "wait", "select", "acquire", "poll"}


def storage_wait_share(raw: str) -> dict:
    """From a py-spy ``--idle`` profile: the samples of threads inside a Skyport storage
    call (a ``skyport/storage`` frame), split into waiting on the socket for the
    backend's answer and everything else (Python work, the GIL included)."""
    waiting = working = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "skyport/storage/" not in stack:
            continue
        leaf = stack.rsplit(";", 1)[-1].split(" (", 1)[0].rsplit(".", 1)[-1]
        if leaf in WAITING:
            waiting += int(count)
        else:
            working += int(count)
    return {"waiting_samples": waiting, "working_samples": working}


def _spy(pid: int, rate: int, output: Path, idle: bool = False, gil: bool = False) -> subprocess.Popen | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(output),
    ]
    if idle:
        argv.append("--idle")
    if gil:
        argv.append("--gil")
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # attached
    return spy


def _stop_spy(spy: subprocess.Popen, output: Path) -> str | None:
    spy.send_signal(signal.SIGINT)
    _, err = spy.communicate(timeout=60)
    if not output.exists():
        return None
    return output.read_text()


def under_parallel_pulls(
    reg: services.Registry, skopeo: Skopeo, ref: str, pulls: int, probes: dict[str, Callable[[], object]]
) -> dict:
    """``pulls`` skopeo pulls of ``ref`` at once; meanwhile each probe is timed in turn
    until they end. Returns the pulls' wall time and each probe's median in ms."""
    targets = [skopeo.scratch() for _ in range(pulls)]
    times: dict[str, list[float]] = {name: [] for name in probes}
    started = time.perf_counter()
    procs = [skopeo.start(f"docker://{reg.host}/{ref}", f"dir:{t}") for t in targets]
    try:
        while any(proc.poll() is None for proc in procs):
            for name, probe in probes.items():
                begun = time.perf_counter()
                probe()
                times[name].append(time.perf_counter() - begun)
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        for proc in procs:
            skopeo.finish(proc, time.monotonic() + 60)
    finally:
        for target in targets:
            skopeo.drop(target)
    return {
        "seconds": round(elapsed, 2),
        "probes": {
            name: {"median_ms": round(statistics.median(t) * 1000, 2) if t else None, "n": len(t)}
            for name, t in times.items()
        },
    }


def run(requests: int, rate: int, parallel: int) -> tuple[dict, str]:
    work = Path(tempfile.mkdtemp(prefix="skyport-hotspots-"))
    lines: list[str] = []
    out: dict = {"requests": requests}
    started: list[services.Registry] = []
    with services.Backend(work) as backend:
        try:
            backend.reset()
            started.append(services.start_skyport(work, backend.endpoint, "skyport-hot"))
            started.append(services.start_distribution(work, backend.endpoint, "distribution-hot"))
            started.append(services.start_distribution(work, None, "distribution-fs-hot"))
            skopeo = Skopeo(work / "skopeo", 120)
            layout = build_layout(work / "img", {"1": [1024]})
            index = json.loads((layout.path / "index.json").read_text())
            manifest_digest = index["manifests"][0]["digest"]
            manifest = json.loads(
                (layout.path / "blobs" / "sha256" / manifest_digest.split(":")[1]).read_text()
            )
            config, layer = manifest["config"]["digest"], manifest["layers"][0]["digest"]
            for reg in started:
                skopeo.copy(layout.ref("1"), f"docker://{reg.host}/hot/tiny:1")

            # 1 + 2: latency and CPU per request, the redirect not followed.
            ops = {
                "GET /v2/": ("GET", "/v2/", {}),
                "GET manifest by tag": ("GET", "/v2/hot/tiny/manifests/1", ACCEPT),
                "GET manifest by digest": ("GET", f"/v2/hot/tiny/manifests/{manifest_digest}", ACCEPT),
                "HEAD blob": ("HEAD", f"/v2/hot/tiny/blobs/{layer}", {}),
                "GET blob (redirect)": ("GET", f"/v2/hot/tiny/blobs/{layer}", {}),
            }
            latency: dict = {}
            with httpx.Client(trust_env=False, timeout=30) as http:
                for reg in started:
                    for label, (method, path, headers) in ops.items():
                        url = reg.url + path

                        def call(method=method, url=url, headers=headers) -> None:
                            response = http.request(method, url, headers=headers)
                            assert response.status_code < 400, (url, response.status_code)

                        cpu = _cpu_seconds(reg.process.pid)
                        moto_cpu = _cpu_seconds(backend.process.pid)
                        ms = _median_ms(call, requests)
                        n = requests + 20
                        cpu_ms = (_cpu_seconds(reg.process.pid) - cpu) * 1000 / n
                        moto_ms = (_cpu_seconds(backend.process.pid) - moto_cpu) * 1000 / n
                        latency.setdefault(label, {})[reg.label] = {
                            "median_ms": round(ms, 2),
                            "cpu_ms": round(cpu_ms, 2),
                            "backend_cpu_ms": round(moto_ms, 2),
                        }
            client_s3 = services.boto_client("s3", backend.endpoint)
            client_ddb = services.boto_client("dynamodb", backend.endpoint)
            bucket = "distribution-hot-blobs"
            key = client_s3.list_objects_v2(Bucket=bucket, MaxKeys=1)["Contents"][0]["Key"]
            table = client_ddb.list_tables()["TableNames"][0]
            schema = client_ddb.describe_table(TableName=table)["Table"]["KeySchema"]
            item_key = {k["AttributeName"]: {"S": "none"} for k in schema}
            floor = {
                "DynamoDB GetItem": _median_ms(
                    lambda: client_ddb.get_item(TableName=table, Key=item_key), requests
                ),
                "S3 GetObject (small)": _median_ms(
                    lambda: client_s3.get_object(Bucket=bucket, Key=key)["Body"].read(), requests
                ),
            }
            out["latency"] = latency
            out["backend_floor_ms"] = {k: round(v, 2) for k, v in floor.items()}
            labels = [reg.label for reg in started]
            lines.append(
                f"per request, median of {requests} ms (CPU ms per request: the "
                "registry process + the moto process, in brackets):"
            )
            lines.append(f"  {'':24}" + "".join(f"{label:>28}" for label in labels))
            for label, per in latency.items():
                cells = "".join(
                    f"{per[x]['median_ms']:>11.2f} ({per[x]['cpu_ms']:4.2f} + "
                    f"{per[x]['backend_cpu_ms']:4.2f})"
                    for x in labels
                )
                lines.append(f"  {label:24}{cells}")
            lines.append(
                "  backend floor, plain boto3 on this moto: "
                + ", ".join(f"{k} {v:.2f}" for k, v in out["backend_floor_ms"].items())
            )

            # 3: py-spy on Skyport while it answers what `skopeo copy` of a tiny image asks.
            sky = started[0]
            raw_path = work / "skyport.raw"
            spy = _spy(sky.process.pid, rate, raw_path, gil=True)
            if spy is None:
                lines.append("\n(py-spy not installed: no profile; pip install py-spy)")
                return out, "\n".join(lines)
            pulls = max(requests // 3, 30)
            with httpx.Client(trust_env=False, timeout=30) as http:
                begun = time.perf_counter()
                for _ in range(pulls):
                    http.get(f"{sky.url}/v2/")
                    http.get(f"{sky.url}/v2/hot/tiny/manifests/1", headers=ACCEPT)
                    http.get(f"{sky.url}/v2/hot/tiny/blobs/{config}")
                    http.get(f"{sky.url}/v2/hot/tiny/blobs/{layer}")
                elapsed = time.perf_counter() - begun
            raw = _stop_spy(spy, raw_path)
            if raw is None:
                lines.append("\n(py-spy wrote nothing: is ptrace allowed here?)")
                return out, "\n".join(lines)
            profile = summarize_profile(raw)
            profile.update(pulls=pulls, seconds=round(elapsed, 2), rate=rate)
            out["profile"] = profile
            total = profile["samples"] or 1
            lines.append("")
            lines.append(
                f"py-spy {rate} Hz on the Skyport server, {pulls} x (GET /v2/, "
                f"GET manifest, GET config blob, GET layer blob) in {elapsed:.1f} s: "
                f"{total} samples holding the GIL (Python at work)"
            )
            lines.append("  by what the request is doing (the stack holds):")
            for name, n in profile["split"]:
                lines.append(f"    {100 * n / total:5.1f}%  {name}")
            lines.append("  by package of the innermost frame:")
            for name, n in profile["self_by_package"][:10]:
                lines.append(f"    {100 * n / total:5.1f}%  {name}")

            # 4: the same requests while `parallel` pulls of the 3-layer image run.
            if parallel:
                multi = build_layout(work / "multi", {"1": [5 * 2**20, 20 * 2**20, 40 * 2**20]})
                with httpx.Client(trust_env=False, timeout=60) as http:
                    crowd: dict = {}
                    for reg in started[:2]:
                        skopeo.copy(multi.ref("1"), f"docker://{reg.host}/hot/multi:1")
                        probes = {
                            "HEAD blob": lambda reg=reg: http.head(f"{reg.url}/v2/hot/tiny/blobs/{layer}"),
                            "GET manifest by tag": lambda reg=reg: http.get(
                                f"{reg.url}/v2/hot/tiny/manifests/1", headers=ACCEPT
                            ),
                            "DynamoDB GetItem": lambda: client_ddb.get_item(TableName=table, Key=item_key),
                        }
                        crowd[reg.label] = under_parallel_pulls(reg, skopeo, "hot/multi:1", parallel, probes)
                    # Once more on Skyport, without probes, under a wall-clock profile (apart:
                    # py-spy takes CPU of its own, which the timings above must not pay).
                    idle_path = work / "skyport-parallel.raw"
                    spy = _spy(sky.process.pid, rate, idle_path, idle=True)
                    if spy is not None:
                        under_parallel_pulls(sky, skopeo, "hot/multi:1", parallel, {})
                        raw = _stop_spy(spy, idle_path)
                        if raw is not None:
                            crowd["skyport"]["storage_calls"] = storage_wait_share(raw)
                out["parallel"] = crowd
                lines.append("")
                lines.append(
                    f"while {parallel} skopeo pull the 3-layer image from the same "
                    "registry at once (median ms of probes sent meanwhile):"
                )
                lines.append(
                    f"  {'':26}" + "".join(f"{label:>16}" for label in crowd) + f"{'idle, above':>16}"
                )
                for name in ("HEAD blob", "GET manifest by tag", "DynamoDB GetItem"):
                    cells = "".join(f"{crowd[label]['probes'][name]['median_ms']:>16.2f}" for label in crowd)
                    idle_ms = (
                        latency.get(name, {}).get("skyport", {}).get("median_ms")
                        if name != "DynamoDB GetItem"
                        else out["backend_floor_ms"]["DynamoDB GetItem"]
                    )
                    lines.append(f"  {name:26}{cells}{idle_ms:>16.2f}")
                lines.append(
                    f"  {'the pulls took (s)':26}"
                    + "".join(f"{crowd[label]['seconds']:>16.2f}" for label in crowd)
                )
                share = crowd.get("skyport", {}).get("storage_calls")
                if share and (share["waiting_samples"] + share["working_samples"]):
                    waited = share["waiting_samples"] / (share["waiting_samples"] + share["working_samples"])
                    lines.append(
                        f"  Skyport threads inside a storage call (py-spy --idle): "
                        f"{100 * waited:.0f}% waiting for moto's answer, "
                        f"{100 - 100 * waited:.0f}% in Python"
                    )
        finally:
            for reg in started:
                reg.process.stop()
            shutil.rmtree(work, ignore_errors=True)
    return out, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hotspots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=300, help="per request type and registry")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--parallel", type=int, default=8, help="concurrent pulls in part 4 (0: skip it)")
    parser.add_argument("--out", type=Path, help="write hotspots.txt and hotspots.json here")
    args = parser.parse_args(argv)
    result, text = run(args.requests, args.rate, args.parallel)
    print(text, flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "hotspots.txt").write_text(text + "\n")
        (args.out / "hotspots.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
