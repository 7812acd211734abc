"""The processes under test: one moto server, Skyport, and Distribution on S3 and on disk.

Skyport and Distribution's S3 driver talk to the same standalone moto server,
each with its own bucket (Skyport also has its own table), so the backend is
shared and the registries' own processes hold only what they really hold.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
# moto accepts any credentials. Fixed ones keep whatever the environment holds
# away from the local processes.
AWS_KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
READY_TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    no_proxy = ",".join(x for x in ("127.0.0.1,localhost", env.get("NO_PROXY", "")) if x)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env.update(AWS_KEYS, AWS_DEFAULT_REGION=REGION)
    env.update(extra)
    return env


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=child_env)
    cwd: Path = ROOT
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Process:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            data = self.log.read_bytes()[-max_bytes:]
        except OSError as exc:
            return f"(no log: {exc})"
        return data.decode(errors="replace")

    def wait_http(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        with httpx.Client(trust_env=False, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    last = f"exited with code {self.proc.returncode}"
                    break
                try:
                    response = http.get(url)
                    if response.status_code < 500:
                        return
                    last = f"{response.status_code}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready at {url}: {last}\n{self.log_tail()}")

    def stop(self, grace: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)


class Backend:
    """The one standalone moto server of a bench run, shared by every registry on S3.

    ``reset()`` empties it (moto's ``POST /moto-api/reset``): a group of scenarios then
    starts from an empty backend, as with a new server, but in the same process.
    """

    def __init__(self, work: Path, name: str = "moto") -> None:
        self.work, self.name = work, name
        self.process: Process | None = None
        self.endpoint = ""

    def __enter__(self) -> Backend:
        self.process, self.endpoint = start_moto(self.work, self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.stop(grace=5)  # its state is disposable; freeing GiBs takes a while

    def reset(self) -> None:
        with httpx.Client(trust_env=False, timeout=120) as http:
            http.post(f"{self.endpoint}/moto-api/reset").raise_for_status()


@dataclass
class Registry:
    """A registry under test: what clients need to reach it and what to measure."""

    label: str  # "skyport", "distribution", "distribution-fs"
    host: str
    process: Process

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def start_moto(work: Path, name: str = "moto") -> tuple[Process, str]:
    """A standalone moto server (see bench/moto_server.py for its one change)."""
    port = free_port()
    proc = Process(
        name,
        [sys.executable, "-m", "bench.moto_server", "-H", LOOPBACK, "-p", str(port)],
        work / "logs" / f"{name}.log",
    ).start()
    endpoint = f"http://{LOOPBACK}:{port}"
    proc.wait_http(f"{endpoint}/moto-api/")
    return proc, endpoint


def boto_client(service: str, endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=AWS_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_KEYS["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


def skyport_part_size() -> int:
    """The S3 part size the Skyport servers started here use (SKYPORT_PART_SIZE passes
    through ``skyport serve``)."""
    from skyport.config import Settings

    return Settings.from_env({**os.environ, "SKYPORT_BUCKET": "-", "SKYPORT_TABLE": "-"}).part_size


def start_skyport(
    work: Path, endpoint: str, name: str, *, upload_service: bool = False, label: str = "skyport"
) -> Registry:
    """``skyport serve`` on the shared moto, with a bucket and table of its own: the ASGI
    app as `make run` serves it, or with ``upload_service`` as deployed with the upload
    service (the Lambda gateway, and the upload service on a second port)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "skyport_cli",
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--s3-endpoint",
        endpoint,
        "--dynamodb-endpoint",
        endpoint,
        "--bucket",
        f"{name}-blobs",
        "--table",
        f"{name}-metadata",
        "--region",
        REGION,
        # As Distribution runs here: no auth, blobs by redirect, the ASGI app on uvicorn.
        "--auth",
        "off",
        "--blob-delivery",
        "redirect",
        # No hooks pipeline (issue 11): Distribution runs none, and its pollers would share
        # the machine and the moto server with what is measured.
        "--hooks",
        "off",
    ]
    if upload_service:
        argv += ["--gateway", "lambda", "--upload-service", "on", "--upload-port", str(free_port())]
    else:
        argv += ["--gateway", "asgi", "--upload-service", "off"]
    # Its state file (for the admin commands) stays in the scratch space, not in the
    # developer's .skyport/ where a `make run` may be keeping its own.
    env = child_env(SKYPORT_STATE_DIR=str(work / name / "state"))
    proc = Process(name, argv, work / "logs" / f"{name}.log", env=env).start()
    reg = Registry(label, f"{LOOPBACK}:{port}", proc)
    proc.wait_http(f"{reg.url}/v2/")
    return reg


DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  redirect:
    disable: {redirect_disabled}
{driver}
http:
  addr: {addr}
  secret: skyport-bench
"""

S3_DRIVER = """\
  s3:
    accesskey: {key}
    secretkey: {secret}
    region: {region}
    regionendpoint: {endpoint}
    bucket: {bucket}
    secure: false
    v4auth: true
"""

FS_DRIVER = """\
  filesystem:
    rootdirectory: {root}
"""


def start_distribution(work: Path, endpoint: str | None, name: str) -> Registry:
    """Distribution (``docker-registry`` from Debian) on the S3 driver against the shared moto,
    redirects on, or on its filesystem driver when ``endpoint`` is None.

    Its S3 driver panics at start when AWS_CA_BUNDLE is set, so that variable is removed
    for this process only; with ``regionendpoint`` set it uses path-style requests.
    """
    port = free_port()
    if endpoint:
        bucket = f"{name}-blobs"
        try:
            boto_client("s3", endpoint).create_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001 - already there is fine
            if "BucketAlready" not in repr(exc):
                raise
        driver = S3_DRIVER.format(
            key=AWS_KEYS["AWS_ACCESS_KEY_ID"],
            secret=AWS_KEYS["AWS_SECRET_ACCESS_KEY"],
            region=REGION,
            endpoint=endpoint,
            bucket=bucket,
        )
    else:
        root = work / name / "storage"
        root.mkdir(parents=True, exist_ok=True)
        driver = FS_DRIVER.format(root=root)
    config = work / name / "config.yml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        DISTRIBUTION_CONFIG.format(
            redirect_disabled="false" if endpoint else "true",
            driver=driver.rstrip("\n"),
            addr=f"{LOOPBACK}:{port}",
        )
    )
    env = child_env()
    env.pop("AWS_CA_BUNDLE", None)
    proc = Process(
        name, ["docker-registry", "serve", str(config)], work / "logs" / f"{name}.log", env=env
    ).start()
    reg = Registry("distribution" if endpoint else "distribution-fs", f"{LOOPBACK}:{port}", proc)
    proc.wait_http(f"{reg.url}/v2/")
    return reg


@contextlib.contextmanager
def registries(work: Path, backend: Backend, name: str) -> Iterator[list[Registry]]:
    """On an emptied backend, Skyport and Distribution (S3); Distribution (fs) beside them."""
    backend.reset()
    started: list[Registry] = []
    try:
        started.append(start_skyport(work, backend.endpoint, f"skyport-{name}"))
        started.append(start_distribution(work, backend.endpoint, f"distribution-{name}"))
        started.append(start_distribution(work, None, f"distribution-fs-{name}"))
        yield started
    finally:
        for reg in started:
            reg.process.stop()
        for reg in started:
            if reg.label == "distribution-fs":  # its layers on disk: gone with the group
                shutil.rmtree(work / reg.process.name, ignore_errors=True)


def distribution_version() -> str:
    try:
        out = subprocess.run(
            ["docker-registry", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.strip().split()[-1] if out.strip() else "unknown"


# ----------------------------------------------------------------------------- memory


def _status_kib(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def rss(pid: int) -> int:
    """Resident set size in bytes, now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss(pid: int) -> int:
    """The high-water mark of the resident set, in bytes (VmHWM)."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5). False if not permitted."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
