"""Fixtures of the direct-upload suite: the registry served over real HTTP (uvicorn, in
a thread of the test process, on a free port) so that `skyport push` / `skyport pull`
run as users run them, as subprocesses, against it and the session's moto server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from skyport.registry import Registry
from skyport_api.app import create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    registry: Registry
    address: str  # host:port

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@contextlib.contextmanager
def serve(registry: Registry, wrap: Callable[[Any], Any] | None = None) -> Iterator[Served]:
    """``registry``'s app on a free port; ``wrap``: an ASGI middleware put in front of it."""
    port = free_port()
    app = create_app(registry) if wrap is None else wrap(create_app(registry))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Served(registry, f"127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)


def skyport(*args: str, env: dict[str, str] | None = None, state: Path | None = None):
    """Run the `skyport` command as a user would; returns the CompletedProcess."""
    environment = {**os.environ, **(env or {})}
    environment.setdefault("DOCKER_CONFIG", str(Path(state or ".").parent / "no-docker-config"))
    if state is not None:
        environment["SKYPORT_PUSH_STATE"] = str(state)
    return subprocess.run(
        [sys.executable, "-m", "skyport_cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
