"""Cold start and per-request cost of the API function, against the floor of its dependencies.

    .venv/bin/python bench/coldstart.py [--runs 7] [--requests 2000]

Cold start: the function and its layer are laid out as Lambda lays them out --
function code and its dependencies in task/, the layer in opt/python/, every module
compiled to .pyc by the same Makefiles `sam build` runs (functions/api/Makefile,
layers/skyport/Makefile), for this machine's platform -- and each sample is a fresh
`python3.12 -S` importing from there (Lambda's runtime Python; no site-packages).
It prints the median and the minimum (the least disturbed by other load) of:

- floor: importing boto3, fastapi, mangum and aws_lambda_powertools, then creating
  what any such function creates: Powertools' Logger, Metrics and Tracer, a boto3
  session and an S3 and a DynamoDB client;
- handler: importing skyport_api.handler (Lambda's init phase: settings, app,
  handler), then what our first request adds: the boto3 session and both clients;
- their ratio (target: at most 1.15).

Tracer runs as in Lambda (LAMBDA_TASK_ROOT set): it imports the X-Ray SDK and
patches botocore, in both measurements.

Per request, in this process: GET manifest and GET blob (307) events from events/
through the handler, storage answered from a tape recorded against moto (so the
time is our code and the framework's, not a backend's), against the same routes
as a bare FastAPI app behind Mangum returning the same responses (target: at most
0.3 ms above it). Not measured here: Lambda's own runtime start, code download, and
the network to S3/DynamoDB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".skyport" / "coldstart"

FLOOR = r"""
import time
t0 = time.perf_counter()
import boto3, fastapi, mangum
from aws_lambda_powertools import Logger, Metrics, Tracer
Logger(service="floor"); Metrics(namespace="Floor", service="floor"); Tracer(service="floor")
t1 = time.perf_counter()
session = boto3.session.Session(region_name="us-east-1")
session.client("s3"); session.client("dynamodb")
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t0) * 1000)
"""

HANDLER = r"""
import time
t0 = time.perf_counter()
import skyport_api.handler
t1 = time.perf_counter()
registry = skyport_api.handler.registry
registry.clients.s3; registry.clients.dynamodb  # what the first request creates
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t0) * 1000)
"""


def find_python312() -> str:
    candidates = []
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        candidates += sorted(Path(root, "versions").glob("3.12*/bin/python3.12"))
    except (OSError, subprocess.CalledProcessError):
        pass
    if shutil.which("python3.12"):
        candidates.append(Path(shutil.which("python3.12")))
    for candidate in candidates:
        if subprocess.run([str(candidate), "-c", ""], capture_output=True).returncode == 0:
            return str(candidate)
    sys.exit("bench/coldstart.py needs python3.12 (the function's runtime), on PATH or under pyenv")


def lay_out(python: str) -> Path:
    """task/ and opt/python/ as `sam build` makes them, for this machine (cached by inputs)."""
    pip_platform = f"manylinux2014_{platform.machine()}"
    inputs = hashlib.sha256()
    for path in sorted([*ROOT.glob("functions/api/**/*"), *ROOT.glob("layers/skyport/**/*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            inputs.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    inputs.update(python.encode() + pip_platform.encode())
    layout = CACHE / inputs.hexdigest()[:16]
    if (layout / "done").exists():
        return layout
    shutil.rmtree(CACHE, ignore_errors=True)
    print(f"laying out the function for {pip_platform} in {layout} ...", file=sys.stderr, flush=True)
    for makefile, target, artifacts in (
        ("functions/api/Makefile", "build-ApiFunction", layout / "task"),
        ("layers/skyport/Makefile", "build-CoreLayer", layout / "opt"),
    ):
        artifacts.mkdir(parents=True)
        subprocess.run(
            [
                "make",
                "-s",
                "-f",
                str(ROOT / makefile),
                target,
                f"ARTIFACTS_DIR={artifacts}",
                f"PYTHON={python}",
                f"PIP_PLATFORM={pip_platform}",
            ],
            check=True,
        )
    (layout / "done").touch()
    return layout


def lambda_env(layout: Path) -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "cli"))  # the bench runs from the source tree
    from skyport_cli.stack import function_environment

    env = {
        "PATH": os.environ.get("PATH", ""),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        # Lambda's sys.path: the function first, then the layer.
        "PYTHONPATH": f"{layout / 'task'}{os.pathsep}{layout / 'opt' / 'python'}",
        "LAMBDA_TASK_ROOT": str(layout / "task"),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": "skyport-api",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
        **function_environment(),
        "SKYPORT_BUCKET": "bench-bucket",
        "SKYPORT_TABLE": "bench-table",
    }
    return env


def sample(python: str, scripts: dict[str, str], env: dict[str, str], runs: int) -> dict[str, list]:
    """(import+init, + clients) in ms, ``runs`` times per script, interleaved so that a
    change of load on the machine weighs on every script alike."""
    samples: dict[str, list] = {name: [] for name in scripts}
    for _ in range(runs):
        for name, script in scripts.items():
            out = subprocess.run(
                [python, "-S", "-c", script],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=tempfile.gettempdir(),
            ).stdout.split()
            samples[name].append((float(out[-2]), float(out[-1])))
    return samples


# --------------------------------------------------------------------------- per request


class _Tape:
    """A boto3 client that records answers, then replays them (no backend in the timing)."""

    def __init__(self, real) -> None:
        self._real, self._answers, self.replaying = real, {}, False

    def __getattr__(self, name):
        method = getattr(self._real, name)

        def call(**kwargs):
            key = (name, repr(sorted(kwargs.items())))
            if self.replaying:
                return self._answers[key]
            self._answers[key] = answer = method(**kwargs)
            return answer

        return call


def per_request(requests: int) -> None:
    import io
    import logging
    from contextlib import redirect_stdout

    from fastapi import FastAPI
    from mangum import Mangum
    from moto.server import ThreadedMotoServer
    from skyport.config import Settings
    from skyport.registry import Registry
    from skyport.storage.clients import AwsClients
    from skyport_api import lambda_adapter
    from skyport_cli import sample_events
    from skyport_cli.gateway import LambdaContext
    from skyport_cli.stack import ensure_stack
    from starlette.responses import Response

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        settings = Settings(bucket="bench", table="bench", s3_endpoint=endpoint, dynamodb_endpoint=endpoint)
        real = AwsClients(settings)
        ensure_stack(real.s3, real.dynamodb, "bench", "bench")

        class Clients:
            s3 = real.s3  # presigning is local: the real client, no network
            dynamodb = _Tape(real.dynamodb)

        handler = lambda_adapter.lambda_handler(Registry(settings, clients=Clients))
        events = {
            name: json.loads((ROOT / "events" / f"{name}.json").read_text()) for name in sample_events.STORY
        }
        sink = io.StringIO()
        lambda_adapter.logger.registered_handler.setStream(sink)
        upload_id = None
        with redirect_stdout(sink):
            for name in list(sample_events.STORY)[:11]:  # pushes the image, then reads it once
                event = json.loads(
                    json.dumps(events[name]).replace(sample_events.UPLOAD_ID, upload_id or "-")
                )
                response = handler(event, LambdaContext())
                assert response["statusCode"] == sample_events.EXPECTED[name], (name, response)
                if name.endswith("post-upload-start"):
                    upload_id = response["headers"]["docker-upload-uuid"]
            manifest_event, blob_event = events["11-get-manifest"], events["08-get-blob"]
            for event in (manifest_event, blob_event):
                handler(event, LambdaContext())  # records what the reads need
            Clients.dynamodb.replaying = True
            manifest = handler(manifest_event, LambdaContext())
            blob = handler(blob_event, LambdaContext())

        # The framework alone: the same routes and answers, FastAPI behind Mangum.
        bare = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        body, m_headers, b_headers = manifest["body"].encode(), manifest["headers"], blob["headers"]

        @bare.get("/v2/{name:path}/manifests/{reference}")
        async def get_manifest(name: str, reference: str) -> Response:
            return Response(
                content=body, headers={k: v for k, v in m_headers.items() if k != "content-length"}
            )

        @bare.get("/v2/{name:path}/blobs/{digest}")
        async def get_blob(name: str, digest: str) -> Response:
            return Response(status_code=307, headers=b_headers)

        framework = Mangum(bare, lifespan="off", text_mime_types=lambda_adapter.TEXT_MIME_TYPES)
        with_powertools = lambda_adapter.make_handler(bare)

        def timed(fn, event) -> float:
            context = LambdaContext()
            with redirect_stdout(sink):
                for _ in range(200):
                    fn(event, context)
                best = float("inf")
                for _ in range(5):
                    started = time.perf_counter()
                    for _ in range(requests // 5):
                        fn(event, context)
                    best = min(best, (time.perf_counter() - started) / (requests // 5))
                sink.seek(0)
                sink.truncate()
            return best * 1000

        print(f"\nper request, in process (Python {platform.python_version()}, this venv), ms:")
        print(f"  {'':18} {'framework':>10} {'+powertools':>12} {'skyport':>9} {'above framework':>16}")
        for label, event in (("GET manifest", manifest_event), ("GET blob (307)", blob_event)):
            base = timed(framework, event)
            powertools = timed(with_powertools, event)
            ours = timed(handler, event)
            print(f"  {label:18} {base:10.3f} {powertools:12.3f} {ours:9.3f} {ours - base:16.3f}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per measurement")
    parser.add_argument("--requests", type=int, default=2000, help="invocations per per-request timing")
    args = parser.parse_args()
    python = find_python312()
    layout = lay_out(python)
    env = lambda_env(layout)
    sample(python, {"floor": FLOOR, "handler": HANDLER}, env, 1)  # warm the OS file cache for both
    samples = sample(python, {"floor": FLOOR, "handler": HANDLER}, env, args.runs)
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"cold start, fresh `python{version} -S` on the Lambda layout (.pyc), {args.runs} runs, "
        f"ms (median / min):"
    )
    print(f"  {'':42} {'import+init':>15} {'+ boto3 clients':>17}")
    stats = {}
    for name, label in (
        ("floor", "floor (boto3+fastapi+mangum+powertools)"),
        ("handler", "skyport_api.handler"),
    ):
        init = [i for i, _ in samples[name]]
        total = [t for _, t in samples[name]]
        stats[name] = (statistics.median(total), min(total))
        print(
            f"  {label:42} {statistics.median(init):7.1f} /{min(init):6.1f} "
            f"{statistics.median(total):8.1f} /{min(total):7.1f}"
        )
    ratio_median = stats["handler"][0] / stats["floor"][0]
    ratio_min = stats["handler"][1] / stats["floor"][1]
    print(f"  {'ratio handler / floor':42} {'':15} {ratio_median:8.3f} /{ratio_min:7.3f}  (target <= 1.15)")
    per_request(args.requests)


if __name__ == "__main__":
    main()
