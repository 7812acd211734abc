"""Nothing a layer holds makes a scan raise: the fabricated images' layers (compressed and
expanded), their bytes flipped, truncated and inserted into at random (seeded), each give
an inventory; what could not be read is a Skipped."""

from __future__ import annotations

import gzip
import random

import pytest
import zstandard
from skyport.scanning.image import scan_image

from .images import IMAGES, TAR, Layer

ROUNDS = 600


def expanded(layer: Layer) -> Layer:
    if layer.data[:2] == b"\x1f\x8b":
        return Layer(gzip.decompress(layer.data), TAR)
    if layer.data[:4] == b"\x28\xb5\x2f\xfd":
        return Layer(zstandard.ZstdDecompressor().decompress(layer.data, max_output_size=64 << 20), TAR)
    return layer


def mutate(rng: random.Random, data: bytes) -> bytes:
    mutated = bytearray(data)
    how = rng.randrange(4)
    if how == 0:
        for _ in range(rng.randrange(1, 20)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
    elif how == 1:
        del mutated[rng.randrange(len(mutated)) :]
    elif how == 2:
        at = rng.randrange(len(mutated))
        mutated[at:at] = rng.randbytes(rng.randrange(1, 600))
    else:  # the headers of the first entries
        mutated[rng.randrange(min(len(mutated), 4096))] = rng.randrange(256)
    return bytes(mutated)


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_layers_never_make_a_scan_raise(seed: int) -> None:
    rng = random.Random(seed)
    layers = [layer for image in IMAGES.values() for layer in image.layers]
    pool = layers + [expanded(layer) for layer in layers]
    for _ in range(ROUNDS):
        layer = Layer(mutate(rng, rng.choice(pool).data), TAR)
        inventory = scan_image([layer.source()])
        assert all(gap.reason for gap in inventory.skipped)
