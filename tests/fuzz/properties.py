"""The registry under fuzzing, four ways: the ASGI app and the Lambda handler behind
the local API Gateway, each with auth off and on. Each comes with a world (an image,
a tag, an artifact and an upload in progress) for the strategies to aim at, a sender
that hands requests to the app byte for byte, and the properties every answer must
have (``Target.check``).

The properties (issue 9, section 3):
- the answer is 2xx, 3xx or 4xx: never a 5xx, nor an exception escaping the app or
  a response never started (a dropped connection);
- a 4xx carries the spec's error envelope, {"errors": [{"code", "message", "detail"?}]},
  with codes from skyport/errors.py's table ("Error Codes");
- every header value is one line (a CR or LF in one makes a real server drop the
  connection) and a WWW-Authenticate is a single Bearer challenge, each parameter once;
- after a refused (4xx) request, storage is exactly as before (StorageView).

Runs are reproducible (derandomize: the examples depend only on the test) and sized
by SKYPORT_FUZZ_EXAMPLES (examples per test and target); the session ends with a line
counting the requests sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import traceback
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from harness import StorageView
from hypothesis import HealthCheck, Phase, settings
from skyport.errors import ERROR_CODES

from .strategies import World

EXAMPLES = int(os.environ.get("SKYPORT_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    # No "explain" phase: it traces every line run while shrinking, ten times slower.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

SENT: Counter[str] = Counter()  # requests sent, per test id


@dataclass
class Request:
    method: str
    path: str  # decoded, as the app sees it; percent-encoded on the wire
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)  # the pieces it arrives in
    content_length: str | None = "auto"  # "auto": the body's length; None: none (streamed)

    def __repr__(self) -> str:
        body = b"".join(self.body)
        shown = body if len(body) <= 200 else body[:200] + f"... ({len(body)} bytes)".encode()
        return (
            f"Request({self.method} {self.path!r} query={self.query!r} headers={self.headers!r} "
            f"content_length={self.content_length!r} body={shown!r})"
        )


class ServerLog(logging.Handler):
    """The tracebacks the app and the gateway log, to show with a 5xx."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.records.append(text)


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v.decode("latin-1") for k, v in self.headers if k.decode("latin-1").lower() == name]
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


# Bearer on the registry's routes; Basic on the token endpoint, which takes Basic credentials.
_CHALLENGE = re.compile(r'(?:Bearer|Basic) ([a-z]+="[^"\\\r\n]*"(?:,[a-z]+="[^"\\\r\n]*")*)')
_CHALLENGE_PARAM = re.compile(r'([a-z]+)="')


@dataclass
class Target:
    name: str  # asgi-open, lambda-open, asgi-auth, lambda-auth
    app: object
    storage: StorageView
    world: World
    manifests: list[bytes]  # bodies of manifests that exist
    auth: bool
    log: ServerLog
    _before: dict | None = None

    def __repr__(self) -> str:
        return f"Target({self.name})"

    def _repr_pretty_(self, printer, cycle) -> None:  # how hypothesis prints a failing case
        printer.text(repr(self))

    def send(self, request: Request) -> Response:
        """The request, byte for byte, to the app; an exception escaping it, or no
        response started, fails the property (a real server drops the connection)."""
        raw_path = quote(request.path, safe="/:@!$&'()*+,;=-._~").encode()
        query = urlencode(request.query, quote_via=quote).encode()
        body = b"".join(request.body)
        headers = [(b"host", b"testserver")]
        if request.content_length == "auto":
            headers.append((b"content-length", str(len(body)).encode()))
        elif request.content_length is not None:
            headers.append((b"content-length", request.content_length.encode("latin-1")))
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": request.path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "client": ("198.51.100.7", 50000),
            "server": ("testserver", 80),
            "headers": headers,
        }
        pieces = [{"type": "http.request", "body": piece, "more_body": True} for piece in request.body]
        pieces.append({"type": "http.request", "body": b"", "more_body": False})
        sent: list[dict] = []

        async def receive() -> dict:
            return pieces.pop(0) if pieces else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        self.log.records.clear()
        SENT[os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]] += 1
        try:
            asyncio.run(self.app(scope, receive, send))
        except Exception as error:  # noqa: BLE001 - the property reports it
            if not any(m["type"] == "http.response.start" for m in sent):
                raise AssertionError(
                    f"no response (a dropped connection): {error!r}\n{request!r}\n{self._log()}"
                ) from error
        start = next((m for m in sent if m["type"] == "http.response.start"), None)
        assert start is not None, f"no response (a dropped connection)\n{request!r}"
        content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return Response(start["status"], list(start.get("headers", [])), content)

    def _log(self) -> str:
        return "\n".join(self.log.records)[-3000:]

    def snapshot(self) -> dict:
        return self.storage.snapshot()

    def check(self, request: Request, response: Response) -> None:
        """The properties of the module docstring, for one request and its answer."""
        if self._before is None:
            self._before = self.snapshot()
        status = response.status
        shown = f"{request!r}\n-> {status} {response.body[:500]!r}"
        assert status < 500, f"a {status}: {shown}\n{self._log()}"
        assert 200 <= status < 500, shown
        for name, value in response.headers:
            assert not re.search(rb"[\r\n\x00]", name + value), (
                f"a header of several lines {name!r}: {value!r}\n{shown}"
            )
        challenge = response.header("www-authenticate")
        if challenge is not None:
            match = _CHALLENGE.fullmatch(challenge)
            assert match, f"not one Bearer challenge: {challenge!r}\n{shown}"
            params = _CHALLENGE_PARAM.findall(match.group(1))
            assert len(params) == len(set(params)) and "realm" in params, f"challenge {challenge!r}\n{shown}"
        if status >= 400 and request.method != "HEAD":
            content_type = response.header("content-type") or ""
            assert content_type.startswith("application/json"), shown
            envelope = response.json()
            assert isinstance(envelope, dict) and set(envelope) == {"errors"}, shown
            assert isinstance(envelope["errors"], list) and envelope["errors"], shown
            for error in envelope["errors"]:
                assert isinstance(error, dict) and set(error) <= {"code", "message", "detail"}, shown
                assert error.get("code") in ERROR_CODES, shown
                assert ERROR_CODES[error["code"]].status == status, shown
                assert isinstance(error.get("message"), str) and error["message"], shown
        if status == 401 and self.auth:
            assert challenge is not None, f"a 401 without a challenge: {shown}"
        after = self.snapshot()
        if status >= 400:
            assert after == self._before, f"storage changed by a refused request: {shown}"
        self._before = after
