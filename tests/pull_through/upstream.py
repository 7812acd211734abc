"""An upstream registry for the pull-through cache's end-to-end tests: Distribution
(Debian's ``docker-registry``) on a free port, behind a small counting HTTP proxy.

The cache rule points at the proxy, never at Distribution itself, so every request that
reaches the upstream (Skyport's, and a client's that followed one of Skyport's redirects
to the upstream's own blob URL) is seen and counted: "the second pull touches no
upstream" is asserted, not assumed. The proxy passes the Host header through, so the
absolute URLs Distribution builds (redirects, upload Locations) name the proxy.

Two storage variants, so that both blob cases of the cache are driven:

* ``fs``: the filesystem driver; Distribution serves blob bytes itself (200), and its
  files can be corrupted on disk (``blob_data``).
* ``s3``: the S3 driver against a moto endpoint, redirects on; a blob GET answers 307 to
  a presigned S3 URL, as Docker Hub, ghcr and ECR answer with their storage's.

``stop()`` stops the proxy and the process: a connection to the rule's URL is then
refused, as with an upstream that is down.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 60.0
PIECE = 256 * 1024
# Hop-by-hop headers (RFC 9110 section 7.6.1) are the proxy's own, never passed on.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
}

CONFIG = """\
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
  secret: skyport-e2e-upstream
"""

FS_DRIVER = """\
  filesystem:
    rootdirectory: {root}
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the proxy


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up (skopeo closing an idle keep-alive connection, a pull
        # that failed on purpose) is no error of the proxy's; anything else is printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class CountingProxy:
    """A threaded HTTP/1.1 reverse proxy to ``target`` (host:port) that records every
    request it forwards as (method, path). Redirects are passed back, never followed."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._seen: list[tuple[str, str]] = []
        self._connections: set[socket.socket] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                super().finish()

            def _forward(self) -> None:
                proxy._record(self.command, self.path)
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    self.send_error(501, "chunked request bodies are not forwarded by the test proxy")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                # A list, not a dict: clients repeat headers (one Accept per media type).
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
                host, port = proxy.target.rsplit(":", 1)
                upstream = http.client.HTTPConnection(host, int(port), timeout=60)
                try:
                    try:
                        upstream.putrequest(
                            self.command, self.path, skip_host=True, skip_accept_encoding=True
                        )
                        for name, value in headers:
                            upstream.putheader(name, value)
                        upstream.endheaders(body)
                        response = upstream.getresponse()
                    except OSError as exc:  # the process behind us is gone: as a gateway would
                        self.send_error(502, f"upstream unreachable: {exc}")
                        return
                    self.send_response_only(response.status, response.reason)
                    passed = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                    for name, value in passed:
                        self.send_header(name, value)
                    has_length = any(k.lower() == "content-length" for k, _ in passed)
                    bodyless = self.command == "HEAD" or response.status in (204, 304)
                    if not has_length and not bodyless:
                        # Unknown length: the end of the body is the end of the connection.
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    if bodyless:
                        return
                    while chunk := response.read(PIECE):
                        self.wfile.write(chunk)
                finally:
                    upstream.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self._server = _Server((LOOPBACK, 0), Handler)
        self.host = f"{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)
        self._thread.start()
        self._stopped = False

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self._seen.append((method, path))

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._seen)

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()
            # Kept-alive connections too: a stopped upstream answers nothing, not a 502.
            with self._lock:
                open_connections = list(self._connections)
            for connection in open_connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(10)


# --------------------------------------------------------------------------- Distribution


@dataclass
class Upstream:
    """A Distribution registry and the counting proxy in front of it."""

    kind: str  # "fs" or "s3"
    proc: subprocess.Popen
    direct_host: str  # Distribution itself: for seeding, which must not be counted
    proxy: CountingProxy
    log: Path
    root: Path | None = None  # the filesystem driver's root directory
    stopped: bool = field(default=False)

    @property
    def host(self) -> str:
        """What a cache rule names: the proxy."""
        return self.proxy.host

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def requests(self) -> list[tuple[str, str]]:
        return self.proxy.requests

    def blob_data(self, digest: str) -> Path:
        """The file holding a blob's bytes in the filesystem driver's layout."""
        assert self.root is not None, "only the fs upstream keeps its blobs in files"
        algorithm, encoded = digest.split(":", 1)
        return self.root / "docker/registry/v2/blobs" / algorithm / encoded[:2] / encoded / "data"

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            return self.log.read_bytes()[-max_bytes:].decode(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        """Stop the proxy (connections to the rule's URL are refused) and Distribution."""
        self.stopped = True
        self.proxy.stop()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    no_proxy = ",".join(x for x in ("127.0.0.1,localhost", env.get("NO_PROXY", "")) if x)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    # Distribution's S3 driver panics at start when AWS_CA_BUNDLE is set (bench/services.py).
    env.pop("AWS_CA_BUNDLE", None)
    env.update(extra)
    return env


def _wait_ready(proc: subprocess.Popen, url: str, log: Path, ready: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    with httpx.Client(trust_env=False, timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last = f"exited with code {proc.returncode}"
                break
            try:
                response = http.get(url)
                if response.status_code in ready:
                    return
                last = f"GET {url} answered {response.status_code}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
    tail = log.read_bytes()[-3000:].decode(errors="replace") if log.exists() else ""
    raise RuntimeError(f"docker-registry not ready at {url}: {last}\n{tail}")


def distribution_config(
    addr: str,
    *,
    root: Path | None = None,
    s3_endpoint: str | None = None,
    bucket: str | None = None,
    proxy_remote: str | None = None,
) -> str:
    """A Distribution config: on its filesystem driver at ``root``, or on S3 (``s3_endpoint``,
    ``bucket``; redirects on); with ``proxy_remote``, in proxy (pull-through cache) mode."""
    if s3_endpoint:
        driver = S3_DRIVER.format(
            key="testing", secret="testing", region="us-east-1", endpoint=s3_endpoint, bucket=bucket
        )
    else:
        driver = FS_DRIVER.format(root=root)
    text = CONFIG.format(
        redirect_disabled="false" if s3_endpoint else "true", driver=driver.rstrip("\n"), addr=addr
    )
    if proxy_remote:
        text += f"proxy:\n  remoteurl: {proxy_remote}\n"
    return text


def htpasswd_line(user: str, password: str) -> str | None:
    """A bcrypt htpasswd line (what Distribution's htpasswd auth reads), or None when this
    Python has no bcrypt (the ``crypt`` module: deprecated, gone in 3.13)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:
        return None
    if crypt.METHOD_BLOWFISH not in crypt.methods:
        return None
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}"


def start_upstream(
    base: Path, kind: str, s3_endpoint: str | None = None, htpasswd: str | None = None
) -> Upstream:
    """Distribution on ``kind`` storage ("fs", or "s3" on the moto at ``s3_endpoint``),
    ready, behind a counting proxy; with ``htpasswd`` (a line of htpasswd_line), every
    request needs those credentials (Basic). The caller stops it (``Upstream.stop``)."""
    if shutil.which("docker-registry") is None:
        raise FileNotFoundError("docker-registry")
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    root = None
    bucket = None
    if kind == "s3":
        assert s3_endpoint, "the s3 upstream needs a moto endpoint"
        import boto3

        bucket = f"upstream-{os.urandom(4).hex()}"
        boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=bucket)
    else:
        root = base / "storage"
        root.mkdir(parents=True, exist_ok=True)
    config = base / "config.yml"
    config.write_text(
        distribution_config(
            f"{LOOPBACK}:{port}", root=root, s3_endpoint=s3_endpoint if kind == "s3" else None, bucket=bucket
        )
    )
    if htpasswd:
        (base / "htpasswd").write_text(htpasswd + "\n")
        with config.open("a") as text:
            text.write(f"auth:\n  htpasswd:\n    realm: skyport-e2e\n    path: {base / 'htpasswd'}\n")
    log = base / "docker-registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing"),
            start_new_session=True,
        )
    direct = f"{LOOPBACK}:{port}"
    try:
        _wait_ready(proc, f"http://{direct}/v2/", log, ready=(401,) if htpasswd else (200,))
    except RuntimeError:
        proc.kill()
        proc.wait(15)
        raise
    return Upstream(kind, proc, direct, CountingProxy(direct), log, root)
