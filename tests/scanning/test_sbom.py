"""The SBOM (CycloneDX 1.6 JSON): valid by cyclonedx-python-lib's strict JSON validator, one
component per package with its purl and where it was seen, the distro as an operating
system, and read back into the same inventory; untrusted input is refused with ValueError."""

from __future__ import annotations

import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from skyport.scanning.image import scan_image
from skyport.scanning.model import Inventory, Skipped
from skyport.scanning.sbom import cyclonedx_json, inventory_from_sbom

from .images import IMAGES

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_the_sbom_is_valid_cyclonedx_1_6_and_reads_back_as_the_same_inventory(name: str) -> None:
    inventory = scan_image(IMAGES[name].sources())
    inventory.skipped.append(Skipped("sha256:" + "cd" * 32, "usr/bin/old", "Go build info before 1.18"))
    sbom = cyclonedx_json(inventory, repository="team/app", digest=DIGEST)

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom.decode()) is None
    assert inventory_from_sbom(sbom) == inventory


def test_the_sbom_names_the_image_each_package_and_the_distro() -> None:
    inventory = scan_image(IMAGES["debian-python"].sources())
    document = json.loads(cyclonedx_json(inventory, repository="team/app", digest=DIGEST))

    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    image = document["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == ("container", "team/app", DIGEST)
    libraries = [c for c in document["components"] if c["type"] == "library"]
    assert sorted(c["purl"] for c in libraries) == sorted(p.purl for p in inventory.packages)
    openssl = next(c for c in libraries if c["name"] == "openssl")
    properties = {p["name"]: p["value"] for p in openssl["properties"]}
    base = IMAGES["debian-python"].layers[0].digest
    assert properties == {"skyport:location": "var/lib/dpkg/status", "skyport:layer": base}
    (system,) = [c for c in document["components"] if c["type"] == "operating-system"]
    assert (system["name"], system["version"]) == ("debian", "12")
    # The same image gives the same serial number.
    again = json.loads(cyclonedx_json(inventory, repository="team/app", digest=DIGEST))
    assert again["serialNumber"] == document["serialNumber"]


def test_an_empty_inventory_makes_a_valid_sbom() -> None:
    sbom = cyclonedx_json(Inventory(), repository="r", digest=DIGEST)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom.decode()) is None
    assert inventory_from_sbom(sbom) == Inventory()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"bomFormat": "CycloneDX"}',
        b'{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"type": "library"}]}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "x": "' + b"a" * (65 << 20) + b'"}',
    ],
    ids=["empty", "text", "array", "no-version", "component-without-name", "deep", "huge"],
)
def test_an_untrusted_sbom_that_is_not_ours_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        inventory_from_sbom(data)


def test_a_forged_skipped_property_is_refused() -> None:
    sbom = json.loads(cyclonedx_json(Inventory(), repository="r", digest=DIGEST))
    sbom["properties"] = [{"name": "skyport:skipped", "value": "[1, 2]"}]
    with pytest.raises(ValueError):
        inventory_from_sbom(json.dumps(sbom).encode())
