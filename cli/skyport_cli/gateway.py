"""A local stand-in for API Gateway (HTTP API, payload format 2.0) in front of a Lambda handler.

An ASGI app: serve it with uvicorn (``SKYPORT_GATEWAY=lambda make run``) or drive it
with Starlette's TestClient (the API suite runs through it). Each HTTP request
becomes the event API Gateway would send, the real handler is called with it, and
its result becomes the HTTP response, with the platform's rules applied where they
change what a client sees:

- the request is buffered whole; over 10 MiB of body, or an event over Lambda's
  6 MiB (6,291,456 bytes, binary bodies base64-encoded), is refused with 413 and the
  handler never runs;
- the path arrives percent-decoded (as HTTP APIs deliver it), header names in lower
  case, repeated headers and query parameters joined with commas, cookies apart;
- an invocation that outlives the function's timeout (29 s in template.yaml), raises,
  or returns more than 6 MiB becomes API Gateway's bare 500, as does a result that
  is not a valid payload 2.0 response; past the 30 s integration timeout, 503.

It is not shipped to Lambda: it lives with the CLI.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

# Platform limits: Lambda quotas (synchronous invocation payloads) and API Gateway's
# HTTP API quotas, as AWS documents them; neither can be raised.
EVENT_LIMIT = 6 * 1024 * 1024  # Lambda synchronous invocation payload, the event JSON
RESPONSE_LIMIT = 6 * 1024 * 1024  # Lambda synchronous response payload
BODY_LIMIT = 10 * 1024 * 1024  # API Gateway HTTP API request payload
INTEGRATION_TIMEOUT = 30.0  # API Gateway HTTP API, not raisable

ROUTE_KEY = "$default"  # the one route template.yaml declares
# Request bodies API Gateway hands over as text; any other is base64-encoded.
TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}

Headers = list[tuple[bytes, bytes]]
logger = logging.getLogger("skyport.gateway")


@dataclass
class LambdaContext:
    """The context object the Lambda runtime passes (the attributes Powertools reads)."""

    function_name: str = "skyport-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "us-east-1"
    deadline: float = field(default_factory=lambda: time.monotonic() + 29)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local/[$LATEST]gateway"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.deadline - time.monotonic()) * 1000), 0)


def _is_text(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith(TEXT_TYPES)


def build_event(
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: Headers,
    body: bytes,
    *,
    source_ip: str = "127.0.0.1",
    scheme: str = "https",
    api_id: str = "local",
    region: str = "us-east-1",
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload 2.0 event for one request."""
    now = time.time() if now is None else now
    # HTTP APIs deliver the path percent-decoded, in rawPath and http.path alike.
    path = unquote(raw_path.decode("latin-1"))
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name in HOP_BY_HOP:
            continue  # the gateway buffered the request: framing is its own business
        if name == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    if body:
        joined["content-length"] = str(len(body))
    forwarded = joined.get("x-forwarded-for")
    joined["x-forwarded-for"] = f"{forwarded}, {source_ip}" if forwarded else source_ip
    joined["x-forwarded-proto"] = scheme
    joined.setdefault("x-forwarded-port", "443" if scheme == "https" else "80")
    joined["x-amzn-trace-id"] = f"Root=1-{int(now):08x}-{secrets.token_hex(12)}"
    request_id = request_id or base64.b64encode(secrets.token_bytes(12)).decode()[:14] + "="
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": ROUTE_KEY,
        "rawPath": path,
        "rawQueryString": query.decode("latin-1"),
        "headers": joined,
    }
    if cookies:
        event["cookies"] = cookies
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    if parameters:
        event["queryStringParameters"] = parameters
    domain = joined.get("host", f"{api_id}.execute-api.{region}.amazonaws.com")
    event["requestContext"] = {
        "accountId": "123456789012",
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": ROUTE_KEY,
        "stage": "$default",
        "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    if body:
        if _is_text(joined.get("content-type", "")):
            try:
                event["body"] = body.decode("utf-8")
                event["isBase64Encoded"] = False
            except UnicodeDecodeError:
                pass
        if "body" not in event:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


def event_size(event: dict[str, Any]) -> int:
    """Bytes of the invocation payload: the event as compact JSON."""
    return len(json.dumps(event, separators=(",", ":")).encode())


@dataclass
class GatewayResponse:
    status: int
    headers: Headers
    body: bytes


def _apigw_error(status: int, message: str) -> GatewayResponse:
    # API Gateway's own errors: JSON with a message, never the registry's envelope.
    body = json.dumps({"message": message}).encode()
    return GatewayResponse(status, [(b"content-type", b"application/json")], body)


def translate_result(result: Any, method: str) -> GatewayResponse:
    """A payload 2.0 handler result as the HTTP response API Gateway sends."""
    if isinstance(result, dict) and "statusCode" in result:
        try:
            status = int(result["statusCode"])
            raw = result.get("body") or ""
            body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
            headers = [
                (str(k).lower().encode("latin-1"), str(v).encode("latin-1"))
                for k, v in (result.get("headers") or {}).items()
                if str(k).lower() not in HOP_BY_HOP
            ]
            headers += [(b"set-cookie", str(c).encode("latin-1")) for c in result.get("cookies") or []]
        except (ValueError, TypeError, AttributeError, UnicodeEncodeError):
            return _apigw_error(500, "Internal Server Error")
        if not 100 <= status <= 599:
            return _apigw_error(500, "Internal Server Error")
    else:
        # Payload 2.0: a result without statusCode is taken as a JSON body, 200.
        status, body = 200, json.dumps(result).encode()
        headers = [(b"content-type", b"application/json")]
    if method != "HEAD":
        # The gateway frames what it sends; on HEAD the function's Content-Length
        # (the size a GET would return) is passed on.
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
    else:
        body = b""
    return GatewayResponse(status, headers, body)


class LambdaGateway:
    """API Gateway + Lambda for one handler, as an ASGI application."""

    def __init__(
        self,
        handler: Any,
        *,
        function_timeout: float = 29.0,
        integration_timeout: float = INTEGRATION_TIMEOUT,
        region: str = "us-east-1",
        max_workers: int = 16,
    ) -> None:
        self.handler = handler
        self.function_timeout = function_timeout
        self.integration_timeout = integration_timeout
        self.region = region
        # Lambda runs concurrent requests in separate environments; here they are
        # threads sharing one handler (its boto3 clients are thread-safe).
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="lambda")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        response = await self._handle(scope, receive)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [*response.headers, (b"apigw-requestid", secrets.token_urlsafe(10).encode())],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _read_body(self, receive: Any) -> bytes | None:
        """The whole body, or None past API Gateway's limit (the rest is drained, not kept)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= BODY_LIMIT:
                chunks.append(chunk)
            more = message.get("more_body", False)
        return None if size > BODY_LIMIT else b"".join(chunks)

    async def _handle(self, scope: dict, receive: Any) -> GatewayResponse:
        body = await self._read_body(receive)
        if body is None:
            return _apigw_error(413, "Request Entity Too Large")
        raw_path = scope.get("raw_path") or quote(scope["path"]).encode()
        client = scope.get("client") or ("127.0.0.1", 0)
        event = build_event(
            scope["method"],
            raw_path,
            scope.get("query_string", b""),
            scope["headers"],
            body,
            source_ip=client[0],
            scheme=scope.get("scheme", "http"),
            region=self.region,
        )
        if event_size(event) > EVENT_LIMIT:
            # Lambda refuses the invocation; the function never sees the request.
            return _apigw_error(413, "Request Entity Too Large")
        timeout = min(self.function_timeout, self.integration_timeout)
        context = LambdaContext(region=self.region, deadline=time.monotonic() + self.function_timeout)
        future = asyncio.get_running_loop().run_in_executor(self._pool, self.handler, event, context)
        try:
            result = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            # The thread runs on (Lambda would freeze the environment); its result is dropped.
            if self.function_timeout < self.integration_timeout:
                return _apigw_error(500, "Internal Server Error")
            return _apigw_error(503, "Service Unavailable")
        except Exception:  # noqa: BLE001 - an unhandled error in the function: API Gateway's 500
            logger.exception("the Lambda handler raised")  # where Lambda's own log would show it
            return _apigw_error(500, "Internal Server Error")
        try:
            if event_size(result) > RESPONSE_LIMIT:
                return _apigw_error(500, "Internal Server Error")
        except (TypeError, ValueError):
            return _apigw_error(500, "Internal Server Error")  # not JSON-serialisable
        return translate_result(result, scope["method"])
