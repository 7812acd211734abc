"""The scanner on the real body type: layers stored in (moto) S3, read through
``get_object(...)["Body"]`` as the scan service passes them, one fresh stream per open."""

from __future__ import annotations

import pytest
from skyport.scanning.image import scan_image
from skyport.scanning.layers import LayerSource

from .images import IMAGES, Expected


@pytest.mark.parametrize("name", ["debian-python", "alpine-node", "distroless-java-go"])
def test_layers_streamed_from_s3_give_the_same_packages(name: str, settings, aws_clients) -> None:
    s3 = aws_clients.s3
    image = IMAGES[name]
    opened: list[str] = []

    def opener(key: str):
        def open_body():
            opened.append(key)
            return s3.get_object(Bucket=settings.bucket, Key=key)["Body"]

        return open_body

    sources = []
    for layer in image.layers:
        key = f"scan-test/{layer.digest}"
        s3.put_object(Bucket=settings.bucket, Key=key, Body=layer.data)
        sources.append(LayerSource(layer.digest, layer.media_type, len(layer.data), opener(key)))

    inventory = scan_image(sources)

    found = frozenset(Expected(p.name, p.version, p.purl, p.location) for p in inventory.packages)
    assert found == image.packages
    assert inventory.distro == image.distro and inventory.skipped == []
    assert len(opened) == len(image.layers)  # each layer read once
