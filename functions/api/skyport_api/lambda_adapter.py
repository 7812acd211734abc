"""The FastAPI app as a Lambda function behind an API Gateway HTTP API (payload 2.0).

Mangum turns events into ASGI requests and back; Powertools adds JSON logs
(request id as correlation id), CloudWatch metrics in EMF and X-Ray tracing.
Only the Lambda entry point (``handler.py``) and the local Lambda gateway use
this module: the app itself knows nothing of Lambda.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum

from .app import create_app

SERVICE = "skyport"
NAMESPACE = "Skyport"

# Response bodies of these types go back as text, not base64 (Mangum matches
# substrings). Manifests are JSON under vendor media types: without these a
# manifest would leave base64-encoded, a third bigger, for API Gateway to decode.
TEXT_MIME_TYPES = ["text/", "application/json", "application/vnd.oci.", "application/vnd.docker.", "+json"]

# Routes as the app matches them: the suffix after the (greedy) repository name.
_MANIFEST = re.compile(r"^/v2/.+/manifests/[^/]+$")
_UPLOAD = re.compile(r"^/v2/.+/blobs/uploads(/[^/]*)?$")

# Module level, once per process: Powertools keeps its state (cold start,
# metric set) on these. The Logger is named after the service, so the app's
# own loggers ("skyport.api", ...) propagate into its JSON output.
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# Off outside Lambda (and under `sam local`). In Lambda it patches botocore, so
# every S3 and DynamoDB call is a subsegment of the request's trace.
tracer = Tracer(service=SERVICE)

LambdaHandler = Callable[[dict, Any], dict]


# Lambda calls the handler on one thread; the local gateway calls it from
# several, and Powertools' metric set is shared.
_metrics_lock = threading.Lock()
_thread = threading.local()


def _ensure_event_loop() -> None:
    # Mangum runs each request on the thread's current event loop, which only
    # the main thread gets implicitly (with a DeprecationWarning since 3.12):
    # one loop per thread, made once and reused by every later request.
    if getattr(_thread, "loop", None) is None:
        _thread.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_thread.loop)


def lambda_handler(registry: Any) -> LambdaHandler:
    """The function's handler for ``registry``: the app as Lambda runs it, one request
    per execution environment at a time."""
    return make_handler(create_app(registry, one_request_at_a_time=True))


def make_handler(app: Any) -> LambdaHandler:
    """The Lambda handler for an ASGI app: Mangum, with Powertools around it."""
    # lifespan="off": the app has no startup work, and a lifespan cycle per
    # cold start would only add latency.
    adapter = Mangum(app, lifespan="off", text_mime_types=TEXT_MIME_TYPES)

    # log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry
    # Authorization headers and request bodies.
    @logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
    )
    # capture_response=False: responses carry presigned URLs, which must not
    # end up in traces.
    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict, context: Any) -> dict:
        started = time.perf_counter()
        _ensure_event_loop()
        response = adapter(event, context)
        _observe(event, response, time.perf_counter() - started)
        return response

    return handler


def _observe(event: dict, response: dict, seconds: float) -> None:
    """One access log line and the request's metrics. Logs the path, never the
    query string, headers or bodies (credentials, presigned URLs in Location)."""
    http = event.get("requestContext", {}).get("http", {})
    method, path = http.get("method", ""), event.get("rawPath", "")
    status = response.get("statusCode", 0)
    code = _error_code(response) if status >= 400 else None
    logger.info(
        "request",
        extra={
            "method": method,
            "path": path[:512],
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "error_code": code,
        },
    )
    metric: tuple[str, str, float] | None = None
    if code:
        metric = ("Errors", MetricUnit.Count, 1)
    elif method == "PUT" and status == 201 and _MANIFEST.fullmatch(path):
        metric = ("Pushes", MetricUnit.Count, 1)
    elif method == "GET" and status == 200 and _MANIFEST.fullmatch(path):
        metric = ("Pulls", MetricUnit.Count, 1)
    elif method in ("POST", "PATCH", "PUT") and status in (201, 202) and _UPLOAD.fullmatch(path):
        size = _body_size(event)
        metric = ("BytesUploaded", MetricUnit.Bytes, size) if size else None
    if metric is None:
        return  # nothing to flush (an empty flush only warns)
    with _metrics_lock:
        if code:
            # One metric per request, so this dimension never lands on another.
            metrics.add_dimension(name="code", value=code)
        metrics.add_metric(name=metric[0], unit=metric[1], value=metric[2])
        metrics.flush_metrics()


def _error_code(response: dict) -> str:
    """The OCI code of an error response: the app renders every error as the spec's envelope."""
    try:
        return str(json.loads(response.get("body") or "")["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"HTTP_{response.get('statusCode')}"


def _body_size(event: dict) -> int:
    """Bytes of the request body, without decoding it."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return len(body.encode())
    return len(body) * 3 // 4 - body[-2:].count("=")
