"""Helpers the suites share beyond fixtures: the settings the deployed function reads,
and a view of everything a registry stores (a rejected request must change nothing)."""

from __future__ import annotations

from dataclasses import replace

from skyport.config import Settings
from skyport.registry import Registry
from skyport_cli.stack import function_environment


def lambda_settings(settings: Settings, template: dict) -> Settings:
    """``settings`` as the deployed function reads them: template.yaml's environment."""
    deployed = Settings.from_env(
        {**function_environment(template), "SKYPORT_BUCKET": settings.bucket, "SKYPORT_TABLE": settings.table}
    )
    return replace(
        deployed,
        region=settings.region,
        s3_endpoint=settings.s3_endpoint,
        dynamodb_endpoint=settings.dynamodb_endpoint,
    )


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
