"""A webhook receiver for the pipeline and end-to-end tests: an HTTP server in a thread of
the test process, on a free loopback port, keeping every request it answers 200 to."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class HookReceiver:
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)

    def wait_for(self, predicate, timeout: float = 20.0) -> list[Delivery]:
        """The deliveries so far once ``predicate(deliveries)`` holds; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(list(self.deliveries)):
                return list(self.deliveries)
            time.sleep(0.1)
        raise AssertionError(
            f"no such deliveries within {timeout:.0f}s: {[d.headers for d in self.deliveries]}"
        )


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver: HookReceiver = self.server.receiver  # type: ignore[attr-defined]
        receiver.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def hook_receiver() -> Iterator[HookReceiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    receiver = HookReceiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks")
    server.receiver = receiver  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
