"""The Lambda handler (skyport_api.handler.handler, as template.yaml names it) fed the
API Gateway events in events/, against moto.

The handler module is imported the way Lambda imports it: once, with the
function's environment from template.yaml plus the bucket and table of a stack
made for this module.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from handler_module import import_handler
from skyport.config import Settings
from skyport.registry import Registry
from skyport_api import lambda_adapter
from skyport_cli import sample_events
from skyport_cli.gateway import EVENT_LIMIT, LambdaContext, LambdaGateway, build_event, event_size
from skyport_cli.stack import ensure_stack, function_environment
from starlette.testclient import TestClient

EVENTS = Path(__file__).resolve().parents[2] / "events"
REGION = "us-east-1"


def load(name: str, upload_id: str | None = None) -> dict:
    text = (EVENTS / f"{name}.json").read_text()
    if upload_id:
        text = text.replace(sample_events.UPLOAD_ID, upload_id)
    return json.loads(text)


@pytest.fixture(scope="module")
def function_env(moto_endpoint, aws_clients, template):
    suffix = uuid.uuid4().hex[:12]
    env = {
        **function_environment(template),
        "SKYPORT_BUCKET": f"skyport-fn-{suffix}",
        "SKYPORT_TABLE": f"skyport-fn-{suffix}",
        "AWS_REGION": REGION,
        "SKYPORT_S3_ENDPOINT": moto_endpoint,
        "SKYPORT_DYNAMODB_ENDPOINT": moto_endpoint,
    }
    ensure_stack(
        aws_clients.s3,
        aws_clients.dynamodb,
        env["SKYPORT_BUCKET"],
        env["SKYPORT_TABLE"],
        template=template,
        region=REGION,
    )
    return env


@pytest.fixture(scope="module")
def handler(function_env):
    return import_handler(function_env).handler


@pytest.fixture(scope="module")
def function_registry(function_env, aws_clients):
    """The same stack seen from outside the function, to inspect what it stored."""
    return Registry(Settings.from_env(function_env), clients=aws_clients)


@pytest.fixture
def logs():
    """What the function logs (Powertools' handler holds the stdout it found at import)."""
    stream = io.StringIO()
    old = lambda_adapter.logger.registered_handler.setStream(stream)
    yield stream
    lambda_adapter.logger.registered_handler.setStream(old)


def invoke(handler, event: dict) -> dict:
    response = handler(event, LambdaContext())
    assert set(response) <= {"statusCode", "headers", "body", "isBase64Encoded", "cookies"}, response
    return response


def body_of(response: dict) -> bytes:
    raw = response.get("body", "")
    return base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()


def test_events_are_what_the_gateway_builds():
    """events/ is generated; a change to the builder or the story must regenerate it."""
    files = sorted(p.stem for p in EVENTS.glob("*.json"))
    assert files == sorted(sample_events.STORY)
    for name, event in sample_events.events().items():
        assert (EVENTS / f"{name}.json").read_text() == sample_events.render(event), name


@pytest.mark.parametrize("name", sorted(sample_events.STORY))
def test_event_is_payload_2_0(name):
    event = load(name)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    http = event["requestContext"]["http"]
    assert http["path"] == event["rawPath"] and http["method"] in {
        "GET",
        "HEAD",
        "PUT",
        "POST",
        "PATCH",
        "DELETE",
    }
    assert all(k == k.lower() for k in event["headers"])
    assert isinstance(event["isBase64Encoded"], bool)
    if "body" in event:
        body = body_of(event)
        assert event["headers"]["content-length"] == str(len(body))


def test_the_story_in_order(handler, capsys, logs):
    """Every route, fed its event: statuses, headers and bodies as a client needs them."""
    upload_id = None
    answers = {}
    for name, expected in sample_events.EXPECTED.items():
        response = invoke(handler, load(name, upload_id))
        assert response["statusCode"] == expected, (name, response)
        headers = response.get("headers", {})
        if name.endswith("post-upload-start"):
            upload_id = headers["docker-upload-uuid"]
            assert headers["location"] == f"{sample_events.UPLOADS}{upload_id}"
            assert headers["range"] == "0-0"
            limit = int(function_environment()["SKYPORT_MAX_REQUEST_BODY"])
            assert int(headers["oci-chunk-max-length"]) == limit
            assert int(headers["oci-chunk-min-length"]) <= limit
        answers[name] = response

    layer_digest = "sha256:" + hashlib.sha256(sample_events.LAYER).hexdigest()
    manifest_digest = "sha256:" + hashlib.sha256(sample_events.MANIFEST).hexdigest()
    assert answers["05-get-upload-status"]["headers"]["range"] == f"0-{sample_events.HALF - 1}"
    assert answers["06-put-upload-finish"]["headers"]["docker-content-digest"] == layer_digest
    assert answers["07-head-blob"]["headers"]["content-length"] == str(len(sample_events.LAYER))
    # The blob leaves by redirect, to the S3 endpoint, and the URL works.
    location = answers["08-get-blob"]["headers"]["location"]
    assert httpx.get(location, timeout=30).content == sample_events.LAYER
    # Manifests come back as text (not base64), byte for byte.
    for name in ("11-get-manifest", "12-get-manifest-by-digest"):
        got = answers[name]
        assert got["isBase64Encoded"] is False
        assert got["body"].encode() == sample_events.MANIFEST
        assert got["headers"]["docker-content-digest"] == manifest_digest
        assert got["headers"]["content-type"] == sample_events.OCI_MANIFEST
    assert answers["10-head-manifest"]["headers"]["content-length"] == str(len(sample_events.MANIFEST))
    assert json.loads(answers["13-get-tags-list"]["body"]) == {"name": "team/app", "tags": ["1.0"]}
    assert "team/app" in json.loads(answers["14-get-catalog"]["body"])["repositories"]
    referrers = json.loads(answers["16-get-referrers"]["body"])
    assert [m["artifactType"] for m in referrers["manifests"]] == ["application/vnd.example.sbom.v1"]

    # Logs: JSON, the API Gateway request id as correlation id; no presigned URL anywhere.
    out = capsys.readouterr().out + logs.getvalue()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("message") == "request"]
    assert [r["correlation_id"] for r in requests] == [
        load(name)["requestContext"]["requestId"] for name in sample_events.STORY
    ]
    assert "X-Amz-Signature" not in out and location not in out
    # Metrics in EMF: a push, pulls, bytes uploaded.
    emf = [line for line in lines if "_aws" in line]
    names = {m["Name"] for line in emf for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Pushes", "Pulls", "BytesUploaded"} <= names
    uploaded = sum(
        line.get("BytesUploaded", [0])[0]
        if isinstance(line.get("BytesUploaded"), list)
        else line.get("BytesUploaded", 0)
        for line in emf
    )
    assert uploaded == len(sample_events.CONFIG) + len(sample_events.LAYER)


def test_errors_are_counted_by_oci_code(handler, capsys):
    event = load("11-get-manifest")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v2/team/app/manifests/no-such-tag"
    response = invoke(handler, event)
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [(line["code"], line["Errors"]) for line in emf] in (
        [("MANIFEST_UNKNOWN", [1.0])],
        [("MANIFEST_UNKNOWN", 1.0)],
    )


def _chunk_event(upload_id: str, body: bytes, start: int | None) -> dict:
    headers = [(b"content-type", b"application/octet-stream")]
    if start is not None:
        headers.append((b"content-range", f"{start}-{start + len(body) - 1}".encode()))
    return build_event("PATCH", f"/v2/team/app/blobs/uploads/{upload_id}".encode(), b"", headers, body)


@pytest.mark.parametrize("announced", [True, False], ids=["content-range", "no-content-range"])
def test_a_body_over_the_limit_is_refused_and_changes_nothing(handler, function_registry, announced):
    """Bigger than SKYPORT_MAX_REQUEST_BODY yet small enough for the event: an OCI 413 that
    says to push in chunks, and the upload goes on as if the request had not been."""
    limit = function_registry.settings.max_request_body
    assert limit, "template.yaml sets SKYPORT_MAX_REQUEST_BODY"
    start = invoke(handler, load("03-post-upload-start"))
    upload_id = start["headers"]["docker-upload-uuid"]
    first = os.urandom(1000)
    assert invoke(handler, _chunk_event(upload_id, first, 0))["statusCode"] == 202
    before = function_registry.uploads.status("team/app", upload_id)

    event = _chunk_event(upload_id, os.urandom(limit + 1), 1000 if announced else None)
    assert event_size(event) <= EVENT_LIMIT  # it does reach the function
    response = invoke(handler, event)
    assert response["statusCode"] == 413
    error = json.loads(response["body"])["errors"][0]
    assert error["code"] == "PAYLOAD_TOO_LARGE" and "chunks" in error["message"]
    assert error["detail"] == {"limit": limit}
    after = function_registry.uploads.status("team/app", upload_id)
    assert (after.offset, after.hash_state, after.part_etags, after.tail_key) == (
        before.offset,
        before.hash_state,
        before.part_etags,
        before.tail_key,
    )

    # The client does as told: the rest in chunks, and the blob is whole.
    rest = os.urandom(limit + 1)
    data = first + rest
    offset = len(first)
    for piece in (rest[:limit], rest[limit:]):
        assert invoke(handler, _chunk_event(upload_id, piece, offset))["statusCode"] == 202
        offset += len(piece)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    finish = build_event(
        "PUT", f"/v2/team/app/blobs/uploads/{upload_id}".encode(), f"digest={digest}".encode(), [], b""
    )
    response = invoke(handler, finish)
    assert response["statusCode"] == 201, response


def test_a_chunk_of_the_advertised_size_fits_in_an_event(function_registry):
    limit = function_registry.settings.max_request_body
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-range", b"0-1"),
        (b"authorization", b"Bearer " + b"x" * 4000),
        (b"user-agent", b"y" * 500),
    ]
    event = build_event(
        "PATCH",
        b"/v2/" + b"a/" * 100 + b"blobs/uploads/" + str(uuid.uuid4()).encode(),
        b"",
        headers,
        os.urandom(limit),
    )
    assert event_size(event) <= EVENT_LIMIT


# --- the gateway's own answers ---------------------------------------------------------------


def _gateway(handler_fn, **kwargs) -> TestClient:
    return TestClient(LambdaGateway(handler_fn, **kwargs), follow_redirects=False)


def test_gateway_refuses_an_event_over_6_mib_without_invoking():
    calls = []
    with _gateway(lambda event, context: calls.append(event)) as client:
        response = client.patch(
            "/v2/team/app/blobs/uploads/x",
            content=os.urandom(4_800_000),
            headers={"content-type": "application/octet-stream"},
        )
    assert response.status_code == 413 and response.json() == {"message": "Request Entity Too Large"}
    assert calls == []


def test_gateway_timeout_and_errors():
    import time

    def slow(event, context):
        time.sleep(1)
        return {"statusCode": 200}

    def broken(event, context):
        raise RuntimeError("boom")

    with _gateway(slow, function_timeout=0.2) as client:
        assert client.get("/v2/").status_code == 500
    with _gateway(slow, function_timeout=60, integration_timeout=0.2) as client:
        response = client.get("/v2/")
        assert response.status_code == 503 and response.json() == {"message": "Service Unavailable"}
    with _gateway(broken) as client:
        response = client.get("/v2/")
        assert response.status_code == 500 and response.json() == {"message": "Internal Server Error"}
    with _gateway(lambda e, c: {"statusCode": 200, "body": "x" * (6 * 1024 * 1024)}) as client:
        assert client.get("/v2/").status_code == 500  # over Lambda's response limit


def test_gateway_event_follows_api_gateway_rules():
    seen = []

    def echo(event, context):
        seen.append(event)
        return {
            "statusCode": 200,
            "headers": {"content-type": "text/plain", "x-a": "1"},
            "cookies": ["c=1"],
            "body": "aGk=",
            "isBase64Encoded": True,
        }

    with _gateway(echo) as client:
        request = client.build_request(
            "PUT",
            "http://testserver/v2/a/b/manifests/x",
            params=[("n", "1"), ("n", "2")],
            headers=[("Accept", "a/b"), ("Accept", "c/d"), ("Cookie", "k=v; k2=v2")],
            content=b"{}",
        )
        request.url = request.url.copy_with(raw_path=b"/v2/a%2Fb/manifests/x?n=1&n=2")
        response = client.send(request)
    assert response.status_code == 200 and response.content == b"hi"
    assert response.headers["x-a"] == "1" and response.headers["set-cookie"] == "c=1"
    event = seen[0]
    assert event["rawPath"] == "/v2/a/b/manifests/x"  # decoded, as HTTP APIs deliver it
    assert event["rawQueryString"] == "n=1&n=2" and event["queryStringParameters"] == {"n": "1,2"}
    assert event["headers"]["accept"] == "a/b,c/d" and event["cookies"] == ["k=v", "k2=v2"]
    assert "cookie" not in event["headers"]


def test_presigned_urls_name_the_regional_s3_endpoint():
    """Deployed (no endpoint override), redirects go to BUCKET.s3.REGION.amazonaws.com, us-east-1
    included: never the global endpoint, never a host under the registry's domain."""
    for region in ("us-east-1", "eu-west-1"):
        registry = Registry(Settings(bucket="skyport-blobs", table="t", region=region))
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        url = registry.clients.s3.generate_presigned_url(
            "get_object", Params={"Bucket": "skyport-blobs", "Key": "blobs/x"}, ExpiresIn=60
        )
        host = httpx.URL(url).host
        assert host == f"skyport-blobs.s3.{region}.amazonaws.com", url
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url


def test_importing_the_handler_creates_no_aws_client(function_env):
    """Lambda's init phase builds the app; boto3 (and its clients) wait for the first request."""
    import subprocess
    import sys

    script = "import skyport_api.handler, sys; print('boto3' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **function_env},
    )
    assert result.stdout.strip() == "False"
