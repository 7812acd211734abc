"""Helpers the suites share beyond fixtures: the settings the deployed function reads,
and a view of everything a registry stores (a rejected request must change nothing)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace

from skyport.config import Settings
from skyport.registry import Registry
from skyport_api.lambda_adapter import lambda_handler
from skyport_api.upload_service import create_upload_app
from skyport_cli.gateway import LambdaGateway
from skyport_cli.stack import function_environment, function_timeout

API_HOST = "testserver"  # the TestClient's default host
UPLOAD_HOST = "uploads.testserver"


def lambda_settings(settings: Settings, template: dict) -> Settings:
    """``settings`` as the deployed function reads them: template.yaml's environment."""
    deployed = Settings.from_env(
        {
            **function_environment(template),
            "SKYPORT_BUCKET": settings.bucket,
            "SKYPORT_TABLE": settings.table,
            # The template names its upload endpoint and key secret by references that do
            # not resolve locally: the upload service variant sets its own.
            "SKYPORT_UPLOAD_ENDPOINT": "",
            "SKYPORT_UPLOAD_KEY_SECRET": "",
            # Pull-through cache fills: a thread of the test process, not CacheFillFunction.
            "SKYPORT_CACHE_FILL_FUNCTION": "",
        }
    )
    return replace(
        deployed,
        region=settings.region,
        s3_endpoint=settings.s3_endpoint,
        dynamodb_endpoint=settings.dynamodb_endpoint,
    )


def upload_service_settings(
    api: Settings, upload_endpoint: str, registry_url: str, key: str | None = None
) -> tuple[Settings, Settings]:
    """The API's settings with an upload endpoint, and the upload service's (as its task
    reads them: the same storage and key, no body limit, the registry's URL), sharing a
    capability key (``key``, or one made for this test)."""
    key = key or secrets.token_urlsafe(32)
    with_endpoint = replace(api, upload_endpoint=upload_endpoint, upload_key=key)
    service = replace(api, upload_key=key, registry_url=registry_url, max_request_body=0)
    return with_endpoint, service


class HostRouter:
    """One ASGI app in front of the API and the upload service, chosen by the request's
    Host, for a TestClient that follows absolute Locations.

    The upload service answers relative Locations (with the capability in their query),
    which a real client resolves against the upload host that answered them; the
    TestClient resolves them against its base URL instead, so a request whose query
    carries a capability is the upload host's whatever its Host says."""

    def __init__(self, api, uploads, upload_host: str) -> None:
        self._api = api
        self._uploads = uploads
        self._upload_host = upload_host

    async def __call__(self, scope, receive, send) -> None:
        app = self._api
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").split(":")[0]
            if host == self._upload_host or b"_capability=" in scope.get("query_string", b""):
                app = self._uploads
        await app(scope, receive, send)


def api_behind_lambda(
    registry: Registry, template: dict, *, with_upload_service: bool = False, upload_key: str | None = None
):
    """The API as deployed: the Lambda handler behind the local API Gateway, configured
    from template.yaml (auth as ``registry``'s settings say); with the upload service, it
    and the API share one ASGI app that routes by Host (the API on ``API_HOST``, the
    upload service on ``UPLOAD_HOST``), with ``upload_key`` or one made for it."""
    settings = replace(lambda_settings(registry.settings, template), auth=registry.settings.auth)
    if with_upload_service:
        settings, upload_settings = upload_service_settings(
            settings, f"http://{UPLOAD_HOST}", f"http://{API_HOST}", upload_key
        )
    gateway = LambdaGateway(
        lambda_handler(Registry(settings, clients=registry.clients)),
        function_timeout=function_timeout(template),
        region=settings.region,
    )
    if not with_upload_service:
        return gateway
    uploads = create_upload_app(Registry(upload_settings, clients=registry.clients))
    return HostRouter(gateway, uploads, UPLOAD_HOST)


class StorageView:
    """Everything a registry stores, to show that a rejected request changed nothing."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def snapshot(self) -> dict:
        settings, clients = self._registry.settings, self._registry.clients
        items = []
        for page in clients.dynamodb.get_paginator("scan").paginate(TableName=settings.table):
            items.extend(page["Items"])
        objects = []
        for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket):
            objects.extend((o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", []))
        uploads = clients.s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads", [])
        return {
            "items": sorted(items, key=lambda i: (i["PK"]["S"], i["SK"]["S"])),
            "objects": sorted(objects),
            "multipart_uploads": sorted(u["UploadId"] for u in uploads),
        }


def new_stack(
    moto_endpoint: str, aws_clients, template: dict, label: str = "test", region: str = "us-east-1"
) -> Settings:
    """Settings of a fresh bucket and table on the moto server, made from template.yaml."""
    from skyport_cli.stack import ensure_stack

    suffix = uuid.uuid4().hex[:12]
    settings = Settings(
        bucket=f"skyport-{label}-{suffix}",
        table=f"skyport-{label}-{suffix}",
        region=region,
        s3_endpoint=moto_endpoint,
        dynamodb_endpoint=moto_endpoint,
    )
    ensure_stack(
        aws_clients.s3,
        aws_clients.dynamodb,
        settings.bucket,
        settings.table,
        template=template,
        region=settings.region,
    )
    return settings
