"""Usage tests (issue 12): images pushed over HTTP (both API flavours of ``client`` where
the endpoint is the subject), figures read from the extension endpoints and the CLI."""

from __future__ import annotations

import json
import os
import time

from oci import OCI_LAYER, Image, descriptor, make_image, push_image
from skyport.registry import Registry
from skyport.storage import keys

SHARED_LAYER = os.urandom(3000)


def image_with_shared_layer(own: int = 1000) -> Image:
    """An image whose first layer is SHARED_LAYER (the same bytes in every such image)."""
    image = make_image((own,))
    manifest = json.loads(image.manifest)
    manifest["layers"].insert(0, descriptor(OCI_LAYER, SHARED_LAYER))
    return Image(image.config, [SHARED_LAYER, *image.layers], json.dumps(manifest).encode(), image.media_type)


def blob_bytes(image: Image) -> int:
    return len(image.config) + sum(len(layer) for layer in image.layers)


def push(client, repository: str, image: Image, tag: str) -> None:
    push_image(client, repository, image, tag)


def record_pull(registry: Registry, repository: str, digest: str, at_ms: int | None = None) -> int:
    """Stands in for the last-pull recorder (the retention part of issue 12 writes these
    items): REPO#<name> / PULL#<digest> with last_pulled_ms, written with boto3."""
    at_ms = at_ms or int(time.time() * 1000)
    registry.clients.dynamodb.put_item(
        TableName=registry.settings.table,
        Item={**keys.manifest_pull(repository, digest), "last_pulled_ms": {"N": str(at_ms)}},
    )
    return at_ms
