"""The scanner on the fabricated images (tests/scanning/images.py): exactly the expected
packages (names, versions, purls, where they were seen), the distro, and what whiteouts and
later layers remove or replace (image-spec layer.md, Changeset and Whiteouts)."""

from __future__ import annotations

import dataclasses

import pytest
from skyport.scanning.image import scan_image
from skyport.scanning.layers import ScanLimits

from .images import (
    ALPINE_NODE,
    DEBIAN_PYTHON,
    DISTROLESS_JAVA_GO,
    IMAGES,
    TAR,
    Expected,
    dpkg_stanza,
    gzip_layer,
    os_release,
    plain_layer,
    zstd_layer,
)


def found(inventory) -> frozenset[Expected]:
    return frozenset(Expected(p.name, p.version, p.purl, p.location) for p in inventory.packages)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_an_image_gives_exactly_its_packages(name: str) -> None:
    image = IMAGES[name]
    inventory = scan_image(image.sources())

    assert found(inventory) == image.packages
    assert inventory.distro == image.distro
    assert inventory.skipped == []
    assert not {package.purl for package in inventory.packages} & image.absent


def test_each_package_names_the_layer_that_holds_it_in_the_final_image() -> None:
    base, app, _whiteouts = DEBIAN_PYTHON.layers
    by_name = {package.name: package for package in scan_image(DEBIAN_PYTHON.sources()).packages}
    assert by_name["openssl"].layer == base.digest
    assert by_name["requests"].layer == app.digest

    _, _, replacing = ALPINE_NODE.layers
    by_name = {package.name: package for package in scan_image(ALPINE_NODE.sources()).packages}
    assert by_name["minimist"].layer == replacing.digest  # 1.2.8, from above the opaque whiteout


def test_a_whiteout_deletes_the_lower_layers_file_and_everything_under_it() -> None:
    site = "usr/lib/python3/dist-packages"
    lower = gzip_layer(
        {
            f"{site}/urllib3-1.24.1.dist-info/METADATA": b"Name: urllib3\nVersion: 1.24.1\n",
            f"{site}/idna-2.7.dist-info/METADATA": b"Name: idna\nVersion: 2.7\n",
        }
    )
    # Deleting the directory site-packages itself takes both.
    upper = plain_layer({"usr/lib/python3/.wh.dist-packages": b""})
    assert scan_image([lower.source(), upper.source()]).packages == []
    # A whiteout applies to lower layers only: the same layer may put the path back.
    again = plain_layer(
        {
            f"{site}/.wh.idna-2.7.dist-info": b"",
            f"{site}/idna-2.7.dist-info/METADATA": b"Name: idna\nVersion: 2.8\n",
        }
    )
    assert [(p.name, p.version) for p in scan_image([lower.source(), again.source()]).packages] == [
        ("idna", "2.8"),
        ("urllib3", "1.24.1"),
    ]


def test_an_opaque_whiteout_hides_the_directory_of_lower_layers_only() -> None:
    lower = gzip_layer(
        {
            "app/node_modules/a/package.json": b'{"name": "a", "version": "1.0.0"}',
            "app/node_modules/b/package.json": b'{"name": "b", "version": "1.0.0"}',
            "srv/node_modules/c/package.json": b'{"name": "c", "version": "1.0.0"}',
        }
    )
    upper = plain_layer(
        {
            "app/node_modules/b/package.json": b'{"name": "b", "version": "2.0.0"}',
            "app/.wh..wh..opq": b"",
        }
    )
    packages = scan_image([lower.source(), upper.source()]).packages
    assert [(p.name, p.version) for p in packages] == [("b", "2.0.0"), ("c", "1.0.0")]


def test_a_later_file_at_the_same_path_replaces_the_earlier_one() -> None:
    first = gzip_layer(
        {
            "etc/os-release": os_release("debian", "11", "Debian 11"),
            "var/lib/dpkg/status": dpkg_stanza("openssl", "1.1.1n-0+deb11u4").encode(),
        }
    )
    second = zstd_layer(
        {
            "etc/os-release": os_release("debian", "12", "Debian 12"),
            "var/lib/dpkg/status": dpkg_stanza("openssl", "3.0.11-1~deb12u1").encode(),
        }
    )
    inventory = scan_image([first.source(), second.source()])
    assert [(p.name, p.version) for p in inventory.packages] == [("openssl", "3.0.11-1~deb12u1")]
    assert inventory.packages[0].purl == "pkg:deb/debian/openssl@3.0.11-1~deb12u1?arch=amd64&distro=debian-12"
    # Replaced by a file that lists nothing (an empty status): gone too.
    third = plain_layer({"var/lib/dpkg/status": b""})
    assert scan_image([first.source(), third.source()]).packages == []


@pytest.mark.parametrize("media_type", [TAR, "application/vnd.oci.image.layer.v1.tar+zstd", "text/plain"])
def test_compression_is_sniffed_from_the_bytes_not_the_media_type(media_type: str) -> None:
    bases = (DEBIAN_PYTHON.layers[0], ALPINE_NODE.layers[0], DISTROLESS_JAVA_GO.layers[0])  # gzip, zstd, tar
    mislabelled = [dataclasses.replace(layer, media_type=media_type) for layer in bases]
    names = {package.name for package in scan_image([layer.source() for layer in mislabelled]).packages}
    assert {"openssl", "busybox", "tzdata"} <= names


def test_an_os_package_without_os_release_gets_the_ecosystems_namespace_and_no_distro() -> None:
    only_status = plain_layer({"var/lib/dpkg/status": dpkg_stanza("bash", "5.2.15-2+b2").encode()})
    inventory = scan_image([only_status.source()])
    assert inventory.distro is None
    assert inventory.packages[0].purl == "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64"


def test_the_default_limits_leave_room_for_real_images() -> None:
    limits = ScanLimits()
    assert limits.max_file_bytes >= 32 << 20  # a big dpkg status or rpmdb.sqlite
    assert limits.max_jar_bytes >= limits.max_file_bytes
    assert limits.deadline is None
