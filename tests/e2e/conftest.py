"""Fixtures for the end-to-end tests: a running registry and real container clients.

``registry`` starts ``python -m skyport_cli serve`` on a free loopback port (embedded
moto backend, all in memory) for the whole session. Developer convenience: set
``SKYPORT_E2E_REGISTRY=127.0.0.1:PORT`` to run the same tests against a registry
that is already running instead -- e.g. Debian's Distribution, to check the tests
themselves. With /tmp/dist.yml::

    version: 0.1
    storage:
      filesystem: {rootdirectory: /tmp/dist}
      delete: {enabled: true}
    http: {addr: "127.0.0.1:5001"}

run ``docker-registry serve /tmp/dist.yml &`` then
``SKYPORT_E2E_REGISTRY=127.0.0.1:5001 python -m pytest tests/e2e``. (Distribution's
S3 driver pointed at a moto server also works, and then serves blob GETs with 307
redirects as Skyport does; unset AWS_CA_BUNDLE for that process.)
``SKYPORT_E2E_DOCKER_STORAGE_DRIVER`` (default ``overlay2,vfs``: the first that
starts) picks the storage driver of the private dockerd. Every test using ``registry``
runs twice: against the registry as `make run` serves it (``asgi``), and as deployed
with the upload service (``uploadsvc``: the Lambda gateway, and the upload service on a
second port, issue 10). ``SKYPORT_E2E_TOPOLOGY=asgi|lambda|uploadsvc`` runs one only;
tests/e2e/test_upload_service.py always uses that topology, with its own servers.

When the client is missing (``scripts/install-system-deps.sh`` installs them) or
cannot run here, ``dockerd``, ``podman`` and ``skopeo`` skip with the reason, or
fail with it under ``CI=true`` (tests/machine.py).
Each daemon and client gets its own state under a temporary directory; nothing on
the host (``~/.docker``, ``/var/lib/containers``, credentials) is read or changed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from machine import cannot_run

from .clients import Client, base_env, run

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
REGISTRY_ENV = "SKYPORT_E2E_REGISTRY"
TOPOLOGY_ENV = "SKYPORT_E2E_TOPOLOGY"
# The server's environment for each topology the session's registry may take.
TOPOLOGIES = {
    "asgi": {},
    "lambda": {"SKYPORT_GATEWAY": "lambda"},
    "uploadsvc": {"SKYPORT_GATEWAY": "lambda", "SKYPORT_UPLOAD_SERVICE": "on"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_server(
    request: pytest.FixtureRequest, port: int, log: Path, **env: str
) -> tuple[subprocess.Popen, list[str], dict[str, str]]:
    """Start ``python -m skyport_cli serve`` (the path `make run` takes) on ``port``,
    its output in ``log``; ``env`` adds environment variables (auth, state dir).
    Returns the process, its argv and its environment."""
    # The subprocess sees the same import roots as pytest (pyproject's `pythonpath`),
    # so it runs from the source tree whether or not the package is installed.
    roots = [str(p) for p in request.config.getini("pythonpath")]
    inherited = os.environ.get("PYTHONPATH")
    paths = os.pathsep.join(roots + ([inherited] if inherited else []))
    environment = base_env(PYTHONPATH=paths, **env)
    argv = [sys.executable, "-m", "skyport_cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=request.config.rootpath,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches it only through us
        )
    return proc, argv, environment


def _stop(proc: subprocess.Popen, what: str) -> None:
    """SIGTERM, then SIGKILL if it has not stopped in time (warns: it should stop)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        warnings.warn(
            pytest.PytestWarning(f"{what} ignored SIGTERM for {STOP_TIMEOUT:.0f}s; killed"),
            stacklevel=1,
        )
        proc.kill()
        proc.wait(STOP_TIMEOUT)


def _unmount_under(base: Path) -> None:
    """Unmount whatever a daemon left mounted below ``base`` (deepest first)."""
    prefix = str(base) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30, check=False)


def _log_tail(path: Path, start: int = 0, max_bytes: int = 20_000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(start, path.stat().st_size - max_bytes))
            return f.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"


def _missing(*binaries: str) -> str | None:
    absent = [b for b in binaries if shutil.which(b) is None]
    if absent:
        return (
            f"{', '.join(absent)} not installed; run scripts/install-system-deps.sh "
            "(as root on Debian) to install the container clients"
        )
    return None


# --------------------------------------------------------------------------- registry


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT": what clients put in image references
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=30)

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log and self.log.exists() else 0


_REGISTRY = pytest.StashKey[Registry]()
_LOG_OFFSET = pytest.StashKey[int]()


def _wait_ready(reg: Registry, deadline: float, auth: bool = False) -> str | None:
    """Poll ``GET /v2/`` until it answers as a registry should (200, or with ``auth`` a
    401 with a challenge); return why it never did, or None. ``reg``: anything with the
    server's ``url`` and its ``proc`` (None: not ours to watch)."""
    last = "no answer yet"
    with httpx.Client(trust_env=False, timeout=2) as http:
        while time.monotonic() < deadline:
            if reg.proc is not None and reg.proc.poll() is not None:
                return f"the registry exited with code {reg.proc.returncode}"
            try:
                response = http.get(f"{reg.url}/v2/")
                if response.status_code == 200 or (
                    auth and response.status_code == 401 and "WWW-Authenticate" in response.headers
                ):
                    return None
                last = f"GET /v2/ answered {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"GET /v2/ failed: {exc!r}"
            time.sleep(0.2)
    return f"not ready after {READY_TIMEOUT:.0f}s ({last})"


def _session_topologies() -> list[str]:
    """The topologies the session's registry takes, one after the other (module doc)."""
    if os.environ.get(REGISTRY_ENV):
        return ["external"]
    chosen = os.environ.get(TOPOLOGY_ENV)
    return [chosen] if chosen else ["asgi", "uploadsvc"]


@pytest.fixture(scope="session", params=_session_topologies())
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A running registry for the session: ours, in each topology, or the one
    ``SKYPORT_E2E_REGISTRY`` names."""
    external = os.environ.get(REGISTRY_ENV)
    if external:
        reg = Registry(host=external.removeprefix("http://").rstrip("/"))
        why = _wait_ready(reg, time.monotonic() + 10)
        if why:
            pytest.fail(f"{REGISTRY_ENV}={external}: {why}", pytrace=False)
        request.config.stash[_REGISTRY] = reg
        yield reg
        return

    topology = request.param
    if topology not in TOPOLOGIES:
        pytest.fail(f"{TOPOLOGY_ENV}={topology}: one of {', '.join(TOPOLOGIES)}", pytrace=False)
    env = dict(TOPOLOGIES[topology])
    if env.get("SKYPORT_UPLOAD_SERVICE") == "on":
        env["SKYPORT_UPLOAD_PORT"] = str(_free_port())  # not PORT+1: it may be taken
    port = _free_port()
    log = tmp_path_factory.mktemp("registry") / "skyport.log"
    proc, argv, _ = spawn_server(request, port, log, **env)
    reg = Registry(host=f"127.0.0.1:{port}", proc=proc, log=log)
    why = _wait_ready(reg, time.monotonic() + READY_TIMEOUT)
    if why:
        _stop(proc, "the registry")
        pytest.fail(
            f"`{' '.join(argv)}` did not start: {why}\n--- registry log ---\n{_log_tail(log)}",
            pytrace=False,
        )
    request.config.stash[_REGISTRY] = reg
    try:
        yield reg
    finally:
        _stop(proc, "the registry")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    reg = item.config.stash.get(_REGISTRY, None)
    item.stash[_LOG_OFFSET] = reg.log_size() if reg else 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach what the registry logged during a failed test to that test's report."""
    outcome = yield
    report = outcome.get_result()
    reg = item.config.stash.get(_REGISTRY, None)
    if not report.failed or reg is None or reg.log is None:
        return
    text = _log_tail(reg.log, item.stash.get(_LOG_OFFSET, 0))
    if reg.proc is not None and reg.proc.poll() is not None:
        text += f"\n(the registry has exited with code {reg.proc.returncode})"
    report.sections.append(("skyport registry log (during this test)", text))


# --------------------------------------------------------------------------- clients


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Client:
    why = _missing("skopeo")
    if why:
        cannot_run(why)
    home = tmp_path_factory.mktemp("skopeo")
    policy = home / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    (home / "auth.json").write_text("{}")  # no credentials: anonymous push and pull
    (home / "tmp").mkdir()
    env = base_env(REGISTRY_AUTH_FILE=str(home / "auth.json"), TMPDIR=str(home / "tmp"))
    return Client(["skopeo", "--policy", str(policy)], env)


def _unix_ping(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in s.recv(4096).split(b"\r\n", 1)[0] + b" "
    except OSError:
        return False


@dataclass
class Docker:
    client: Client
    host: str  # DOCKER_HOST
    storage_driver: str


@contextmanager
def private_dockerd(
    *network: str, prefix: str = "skyport-dockerd-", daemon_config: dict | None = None
) -> Iterator[Docker]:
    """Start a private dockerd (no iptables) and a client for it; stop it and remove
    its state on exit. When it cannot run here: cannot_run, saying why. ``network``: the
    daemon's options for its default network, none unless a caller brings a bridge of
    its own (tests/e2e/test_sam_local.py). ``daemon_config``: a daemon.json of its own
    (e.g. ``registry-mirrors``, tests/pull_through/test_e2e.py), as ``--config-file``."""
    why = _missing("dockerd", "docker")
    if why:
        cannot_run(why)
    if os.geteuid() != 0:
        cannot_run("dockerd needs root here (rootless docker is not set up for the tests)")
    # Under /tmp with a short name: a unix socket path is limited to 107 bytes.
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    config = base / "client"
    config.mkdir()
    (config / "config.json").write_text("{}")
    sock = base / "docker.sock"
    config_file = []
    if daemon_config is not None:
        (base / "daemon.json").write_text(json.dumps(daemon_config))
        config_file = [f"--config-file={base / 'daemon.json'}"]
    failures = []
    proc = None
    try:
        for driver in (os.environ.get("SKYPORT_E2E_DOCKER_STORAGE_DRIVER") or "overlay2,vfs").split(","):
            log = base / f"dockerd-{driver}.log"
            argv = [
                "dockerd",
                "--iptables=false",
                "--ip6tables=false",
                *(network or ("--bridge=none",)),
                f"--storage-driver={driver}",
                f"--data-root={base / ('data-' + driver)}",
                f"--exec-root={base / 'exec'}",
                f"--pidfile={base / 'dockerd.pid'}",
                f"--host=unix://{sock}",
                *config_file,
            ]
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=base_env(),
                    start_new_session=True,
                )
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None and not _unix_ping(sock):
                time.sleep(0.2)
            if proc.poll() is None and _unix_ping(sock):
                break
            _stop(proc, "dockerd")
            failures.append(f"--storage-driver={driver}:\n{_log_tail(log, max_bytes=3000)}")
            proc = None
        if proc is None:
            cannot_run("dockerd did not start:\n" + "\n".join(failures))
        host = f"unix://{sock}"
        client = Client(["docker"], base_env(DOCKER_HOST=host, DOCKER_CONFIG=str(config)))
        client("version")  # the client talks to this daemon (API version negotiated)
        yield Docker(client, host, driver)
    finally:
        if proc is not None:
            _stop(proc, "dockerd")
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Docker]:
    """A private dockerd (no iptables, no bridge) for the session, and a client for it."""
    with private_dockerd() as docker:
        yield docker


@pytest.fixture(scope="session")
def podman() -> Iterator[Client]:
    """podman with private storage (vfs) and state, so tests never touch the host's containers."""
    why = _missing("podman")
    if why:
        cannot_run(why)
    if os.geteuid() != 0:
        cannot_run("podman runs as root in these tests (rootless needs subuid setup)")
    base = Path(tempfile.mkdtemp(prefix="skyport-podman-", dir="/tmp"))
    (base / "tmp").mkdir()
    (base / "auth.json").write_text("{}")  # no credentials: anonymous push and pull
    env = base_env(TMPDIR=str(base / "tmp"), REGISTRY_AUTH_FILE=str(base / "auth.json"))
    client = Client(
        [
            "podman",
            "--root",
            str(base / "root"),
            "--runroot",
            str(base / "run"),
            "--tmpdir",
            str(base / "libpod"),
            "--storage-driver",
            "vfs",
            "--events-backend",
            "file",
            "--cgroup-manager",
            "cgroupfs",
        ],
        env,
    )
    try:
        result = client("info", "--format", "{{.Store.GraphDriverName}}", check=False)
        if result.returncode != 0:
            cannot_run(f"podman cannot run here:\n{result.stderr[-2000:]}")
        yield client
    finally:
        run(["podman", *client.argv[1:], "system", "reset", "--force"], env=env, check=False)
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
