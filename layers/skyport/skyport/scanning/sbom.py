"""The SBOM of a scanned image (issue 14): CycloneDX 1.6 JSON, built and read with
cyclonedx-python-lib.

One component per package, named by its purl, with two properties saying where the scan saw
it (``skyport:location``, the path in the image; ``skyport:layer``, the layer digest); the
distro as an ``operating-system`` component; what the scan could not read as
``skyport:skipped`` properties of the BOM (each a JSON object: layer, path, reason), so the
SBOM does not hide a gap either. The image itself is the BOM's ``metadata.component``, a
``container`` whose version is the manifest digest.

``inventory_from_sbom`` reads a stored SBOM back into an :class:`Inventory`, so a re-scan
matches newer vulnerability data against it instead of reading the layers again. Its input
is untrusted (a referrer anyone with push rights could have written): it must be valid
CycloneDX 1.6 by the library's strict schema validator before anything reads it.
"""

from __future__ import annotations

import json
import uuid

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from skyport.scanning.model import Distro, Inventory, Package, Skipped

SCHEMA_VERSION = SchemaVersion.V1_6
LOCATION = "skyport:location"
LAYER = "skyport:layer"
SKIPPED = "skyport:skipped"
MAX_SBOM_BYTES = 64 << 20  # far beyond the SBOM of any real image


def _component(index: int, package: Package) -> Component:
    purl = PackageURL.from_string(package.purl)
    return Component(
        type=ComponentType.LIBRARY,
        bom_ref=f"package-{index}",  # a purl may repeat (one package at two paths)
        name=package.name,
        group=purl.namespace if purl.type == "maven" else None,
        version=package.version,
        purl=purl,
        licenses=[DisjunctiveLicense(name=name) for name in package.licenses],
        properties=[
            Property(name=LOCATION, value=package.location),
            Property(name=LAYER, value=package.layer),
        ],
    )


def cyclonedx_json(inventory: Inventory, *, repository: str, digest: str) -> bytes:
    """The SBOM of the image ``repository@digest`` (a platform manifest)."""
    image = Component(type=ComponentType.CONTAINER, bom_ref="image", name=repository, version=digest)
    # The same image gives the same serial number: a BOM's identity is what it describes.
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"skyport:{repository}@{digest}"))
    bom.metadata.component = image
    components = [_component(index, package) for index, package in enumerate(inventory.packages)]
    if inventory.distro is not None:
        distro = inventory.distro
        components.append(
            Component(
                type=ComponentType.OPERATING_SYSTEM,
                bom_ref="operating-system",
                name=distro.id,
                version=distro.version_id,
                description=distro.pretty_name or None,
            )
        )
    bom.components.update(components)
    bom.register_dependency(image, components)
    bom.properties.update(
        Property(name=SKIPPED, value=json.dumps(gap.to_dict(), sort_keys=True)) for gap in inventory.skipped
    )
    return JsonV1Dot6(bom).output_as_string(indent=None).encode()


def _license_names(component: Component) -> tuple[str, ...]:
    names = set()
    for declared in component.licenses:
        if isinstance(declared, LicenseExpression):
            names.add(declared.value)
        elif isinstance(declared, DisjunctiveLicense) and (declared.id or declared.name):
            names.add(declared.id or declared.name)
    return tuple(sorted(names))


def inventory_from_sbom(data: bytes) -> Inventory:
    """The inventory an SBOM written by :func:`cyclonedx_json` records. ValueError when ``data``
    is not a CycloneDX 1.6 JSON document."""
    if len(data) > MAX_SBOM_BYTES:
        raise ValueError(f"SBOM larger than {MAX_SBOM_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"SBOM is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ValueError("SBOM is not a JSON object")
    error = JsonStrictValidator(SCHEMA_VERSION).validate_str(json.dumps(document))
    if error is not None:
        raise ValueError(f"not a CycloneDX {SCHEMA_VERSION.to_version()} document: {error}")
    try:
        bom = Bom.from_json(document)  # type: ignore[attr-defined]  # added by py-serializable
    except Exception as error:  # noqa: BLE001 - the library raises many kinds on odd input
        raise ValueError(f"SBOM unreadable: {type(error).__name__}: {error}") from None
    distro, packages, skipped = None, [], []
    for component in bom.components:
        if component.type == ComponentType.OPERATING_SYSTEM and distro is None:
            distro = Distro(component.name, component.version or "", component.description or "")
        elif component.purl is not None:
            properties = {item.name: item.value for item in component.properties}
            packages.append(
                Package(
                    name=component.name,
                    version=component.version or "",
                    purl=component.purl.to_string(),
                    location=properties.get(LOCATION, ""),
                    layer=properties.get(LAYER, ""),
                    licenses=_license_names(component),
                )
            )
    for item in bom.properties:
        if item.name == SKIPPED:
            try:
                skipped.append(Skipped.from_dict(json.loads(item.value or "")))
            except (ValueError, TypeError, AttributeError):
                raise ValueError(f"SBOM property {SKIPPED} is not a skipped-path record") from None
    packages.sort(key=lambda package: (package.purl, package.location))
    return Inventory(distro=distro, packages=packages, skipped=skipped)
