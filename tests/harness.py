"""Helpers the suites share beyond fixtures: the settings the deployed function reads,
and a view of everything a registry stores (a rejected request must change nothing)."""

from __future__ import annotations

import secrets
from dataclasses import replace

from skyport.config import Settings
from skyport.registry import Registry
from skyport_cli.stack import function_environment


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
        }
    )
    return replace(
        deployed,
        region=settings.region,
        s3_endpoint=settings.s3_endpoint,
        dynamodb_endpoint=settings.dynamodb_endpoint,
    )


def upload_service_settings(
    api: Settings, upload_endpoint: str, registry_url: str
) -> tuple[Settings, Settings]:
    """The API's settings with an upload endpoint, and the upload service's (as its task
    reads them: the same storage and key, no body limit, the registry's URL), sharing a
    capability key made for this test."""
    key = secrets.token_urlsafe(32)
    with_endpoint = replace(api, upload_endpoint=upload_endpoint, upload_key=key)
    service = replace(api, upload_key=key, registry_url=registry_url, max_request_body=0)
    return with_endpoint, service


class HostRouter:
    """One ASGI app in front of several, chosen by the request's Host: the API and the
    upload service on their own hosts, for a TestClient that follows absolute Locations."""

    def __init__(self, apps: dict) -> None:
        self._apps = apps
        self._default = next(iter(apps.values()))

    async def __call__(self, scope, receive, send) -> None:
        app = self._default
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").split(":")[0]
            app = self._apps.get(host, self._default)
        await app(scope, receive, send)


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
