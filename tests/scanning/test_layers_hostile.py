"""Hostile and broken layers (issue 14, "Limits"): each gives a Skipped naming the path or the
layer and why, the rest of the image is still scanned, and nothing raises."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
import time
import zipfile

import pytest
from skyport.scanning.image import scan_image
from skyport.scanning.layers import MiB, ScanLimits
from skyport.scanning.model import Skipped

from .images import (
    DEBIAN_PACKAGES,
    DEBIAN_PYTHON,
    TAR,
    Hardlink,
    Layer,
    Symlink,
    go_buildinfo,
    gzip_layer,
    gzip_tar_layer,
    jar,
    plain_layer,
    pom_properties,
    tar_bytes,
    zstd_layer,
)

GOOD = DEBIAN_PYTHON.layers[0]  # a Debian base: openssl, zlib1g, libc6
GOOD_NAMES = {expected.name for expected in DEBIAN_PACKAGES}
GOOD_STATUS = (
    b"Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\nArchitecture: amd64\n\n" * 5
)


DEFAULT = ScanLimits()


def scan(*layers: Layer, limits: ScanLimits = DEFAULT):
    return scan_image([layer.source() for layer in layers], limits)


def reasons(skipped: list[Skipped]) -> dict[str, str]:
    return {gap.path: gap.reason for gap in skipped}


def assert_rest_scanned(inventory) -> None:
    assert GOOD_NAMES <= {package.name for package in inventory.packages}
    assert inventory.distro is not None and inventory.distro.id == "debian"


def test_a_gzip_bomb_stops_at_the_layer_limit_and_the_next_layer_is_read() -> None:
    bomb = gzip_tar_layer([("var/log/zeros", 256 * MiB, bytes(MiB))])
    assert len(bomb.data) < 2 * MiB
    inventory = scan(bomb, GOOD, limits=ScanLimits(max_layer_expanded_bytes=32 * MiB))

    (gap,) = inventory.skipped
    assert gap.layer == bomb.digest and gap.path == ""
    assert "compression bomb" in gap.reason and "32 MiB" in gap.reason
    assert_rest_scanned(inventory)


def test_the_scans_expanded_budget_stops_the_scan_and_names_every_layer_left() -> None:
    big = gzip_tar_layer([("var/log/zeros", 64 * MiB, bytes(MiB))])
    inventory = scan(big, GOOD, limits=ScanLimits(max_expanded_bytes=16 * MiB))
    assert [(gap.layer, gap.path) for gap in inventory.skipped] == [(big.digest, ""), (GOOD.digest, "")]
    assert "the most one scan reads" in inventory.skipped[0].reason
    assert inventory.skipped[1].reason.startswith("not read: ")
    assert inventory.packages == []


def test_a_layer_bigger_than_the_limit_is_not_opened() -> None:
    opened = []
    source = dataclasses.replace(GOOD.source(), size=11 << 30, open=lambda: opened.append(1))
    inventory = scan_image([source, GOOD.source()])
    assert opened == []
    assert inventory.skipped[0].path == "" and "11 GiB" in inventory.skipped[0].reason


def test_a_passed_deadline_reports_the_layers_not_read() -> None:
    inventory = scan(GOOD, limits=ScanLimits(deadline=time.monotonic() - 1))
    assert inventory.packages == []
    assert "deadline" in inventory.skipped[0].reason


def test_dot_dot_and_absolute_paths_are_reported_and_never_used() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in (
            ("../etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            ("/etc/shadow", b"root:*:19000::::::\n"),
            ("usr/../../var/lib/dpkg/status", b"Package: evil\nVersion: 1\n\n"),
            ("/var/lib/dpkg/status", b"Package: evil\nVersion: 2\n\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    hostile = Layer(buffer.getvalue(), TAR)
    inventory = scan(hostile, GOOD)

    gaps = reasons(inventory.skipped)
    assert "'..'" in gaps["../etc/passwd"] and "'..'" in gaps["usr/../../var/lib/dpkg/status"]
    assert "absolute" in gaps["/etc/shadow"] and "absolute" in gaps["/var/lib/dpkg/status"]
    assert "evil" not in {package.name for package in inventory.packages}
    assert_rest_scanned(inventory)


def test_links_are_never_followed_and_those_that_matter_are_reported() -> None:
    hostile = gzip_layer(
        {
            # Named like identifying files, pointing at secrets: not read through.
            "var/lib/dpkg/status.d/shadow": Symlink("/etc/shadow"),
            "lib/apk/db/installed": Hardlink("etc/shadow"),
            # Leaving the root, whatever the name.
            "app/escape": Symlink("../../../../../etc/passwd"),
            "app/hard": Hardlink("../outside"),
            # Debian's own os-release link: inside, to another identifying path, silent.
            "etc/os-release": Symlink("../usr/lib/os-release"),
        }
    )
    inventory = scan(GOOD, hostile)

    gaps = reasons(inventory.skipped)
    assert set(gaps) == {"var/lib/dpkg/status.d/shadow", "lib/apk/db/installed", "app/escape", "app/hard"}
    assert "'/etc/shadow'" in gaps["var/lib/dpkg/status.d/shadow"] and "not followed" in gaps["app/escape"]
    assert "leaves the image root" in gaps["app/escape"] and "leaves the image root" in gaps["app/hard"]
    assert_rest_scanned(inventory)


def test_a_corrupt_gzip_stream_stops_that_layer_only() -> None:
    noise = bytes(range(256)) * 4096  # 1 MiB that compresses, so the stream is long
    layer = gzip_tar_layer([("var/lib/dpkg/status", 1000, b"x"), ("big", len(noise) * 8, noise)])
    middle = len(layer.data) // 2
    corrupt = Layer(layer.data[:middle] + b"\xff" * 64 + layer.data[middle + 64 :], layer.media_type)
    inventory = scan(corrupt, GOOD)

    (gap,) = inventory.skipped
    assert gap.layer == corrupt.digest and gap.path == ""
    assert gap.reason.startswith("corrupt gzip stream")
    assert_rest_scanned(inventory)


def test_a_gzip_layer_whose_checksum_fails_is_reported() -> None:
    layer = gzip_tar_layer([("var/lib/dpkg/status", len(GOOD_STATUS), GOOD_STATUS), ("big", 64 * 1024, b"z")])
    bad_crc = Layer(layer.data[:-8] + bytes(4) + layer.data[-4:], layer.media_type)
    inventory = scan(bad_crc, GOOD)
    (gap,) = inventory.skipped
    assert gap.layer == bad_crc.digest and "incorrect data check" in gap.reason
    assert_rest_scanned(inventory)


@pytest.mark.parametrize("cut", ["in a header", "in a file", "at a header boundary", "in the gzip"])
def test_a_truncated_layer_is_reported(cut: str) -> None:
    files = {"var/lib/dpkg/status": GOOD_STATUS, "usr/share/doc/README": b"r" * 3000}
    whole = tar_bytes(files)
    second_header = 512 + -(-len(GOOD_STATUS) // 512) * 512  # after the status's header and data
    if cut == "in the gzip":
        layer = gzip_layer(files)
        truncated = Layer(layer.data[: len(layer.data) - 20], layer.media_type)
    else:
        end = {"in a header": second_header + 100, "in a file": second_header + 1024}
        end["at a header boundary"] = second_header
        truncated = Layer(whole[: end[cut]], TAR)
    inventory = scan(truncated, GOOD)

    (gap,) = inventory.skipped
    assert gap.layer == truncated.digest and "truncated" in gap.reason
    assert_rest_scanned(inventory)


def test_garbage_and_empty_layers_are_reported() -> None:
    garbage = Layer(bytes(range(256)) * 8, TAR)
    empty = Layer(b"", TAR)
    bad_zstd = Layer(b"\x28\xb5\x2f\xfd" + b"\xff" * 100, TAR)
    inventory = scan(garbage, empty, bad_zstd, GOOD)
    assert [gap.layer for gap in inventory.skipped] == [garbage.digest, empty.digest, bad_zstd.digest]
    assert "zstd" in inventory.skipped[2].reason
    assert_rest_scanned(inventory)


def test_a_huge_tar_extended_header_is_refused_not_read_into_memory() -> None:
    info = tarfile.TarInfo("x")
    info.pax_headers = {"comment": "c" * (2 * MiB)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(b""))
    inventory = scan(Layer(buffer.getvalue(), TAR), GOOD)
    assert "extended header" in inventory.skipped[0].reason
    assert_rest_scanned(inventory)


def test_a_zip_bomb_in_a_jar_is_read_bounded_and_the_rest_of_the_jar_counts() -> None:
    bomb = jar(
        {
            "META-INF/maven/org.example/good/pom.properties": pom_properties("org.example", "good", "1.0"),
            "META-INF/maven/org.example/bomb/pom.properties": b"version=1\n" + b" " * (50 * MiB),
            "BOOT-INF/lib/bomb.jar": bytes(200 * MiB),
            "BOOT-INF/lib/inner.jar": jar({"BOOT-INF/lib/deeper.jar": jar({})}),
        }
    )
    assert len(bomb) < 2 * MiB
    inventory = scan(GOOD, gzip_layer({"app/app.jar": bomb}), limits=ScanLimits(max_jar_bytes=16 * MiB))

    gaps = reasons(inventory.skipped)
    assert "zip bomb" in gaps["app/app.jar!META-INF/maven/org.example/bomb/pom.properties"]
    assert "expands beyond" in gaps["app/app.jar!BOOT-INF/lib/bomb.jar"]
    assert "two levels deep" in gaps["app/app.jar!BOOT-INF/lib/inner.jar!BOOT-INF/lib/deeper.jar"]
    assert "pkg:maven/org.example/good@1.0" in {package.purl for package in inventory.packages}
    assert_rest_scanned(inventory)


def test_a_jar_that_is_not_a_zip_and_a_jar_over_the_limit_are_reported() -> None:
    layer = gzip_layer(
        {"app/broken.jar": b"PK\x03\x04 not really", "app/big.jar": jar({"a": os.urandom(2 * MiB)})}
    )
    inventory = scan(GOOD, layer, limits=ScanLimits(max_jar_bytes=1 * MiB))
    gaps = reasons(inventory.skipped)
    assert "unreadable jar archive" in gaps["app/broken.jar"]
    assert "more than the 1 MiB" in gaps["app/big.jar"]
    assert_rest_scanned(inventory)


def test_deep_json_in_a_package_json_is_not_parsed() -> None:
    deep = b'{"name": "deep", "version": "1.0.0", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    odd = {
        "app/node_modules/deep/package.json": deep,
        "app/node_modules/notjson/package.json": b"{'name': 'x'",
        "app/node_modules/list/package.json": b"[1, 2]",
        "app/node_modules/numbers/package.json": json.dumps({"name": 1, "version": ["1"]}).encode(),
        "app/node_modules/ok/package.json": b'{"name": "ok", "version": "1.0.0", "s": "[[[[[[[["}',
    }
    inventory = scan(GOOD, zstd_layer(odd))
    gaps = reasons(inventory.skipped)
    assert "nests deeper" in gaps["app/node_modules/deep/package.json"]
    assert "not JSON" in gaps["app/node_modules/notjson/package.json"]
    npm = [package.purl for package in inventory.packages if package.ecosystem == "npm"]
    assert npm == ["pkg:npm/ok@1.0.0"]
    assert_rest_scanned(inventory)


def test_a_100_mib_metadata_file_is_skipped_by_size() -> None:
    site = "usr/lib/python3/dist-packages"
    layer = gzip_tar_layer(
        [
            (f"{site}/huge-1.0.dist-info/METADATA", 100 * MiB, b"Name: huge\n" + b"x" * 4085),
            (f"{site}/small-1.0.dist-info/METADATA", 30, b"Name: small\nVersion: 1.0\n\n"),
        ]
    )
    inventory = scan(GOOD, layer)
    gaps = reasons(inventory.skipped)
    assert gaps == {f"{site}/huge-1.0.dist-info/METADATA": gaps[f"{site}/huge-1.0.dist-info/METADATA"]}
    assert "100 MiB, more than the 64 MiB" in gaps[f"{site}/huge-1.0.dist-info/METADATA"]
    assert "pkg:pypi/small@1.0" in {package.purl for package in inventory.packages}
    assert_rest_scanned(inventory)


def test_go_build_info_before_1_18_and_malformed_is_reported() -> None:
    old = b"\x7fELF" + bytes(8188) + b"\xff Go buildinf:" + bytes([8, 0]) + bytes(16) + bytes(64)
    info = go_buildinfo("go1.21.0", "path\tx\n")
    broken = b"\x7fELF" + bytes(8188) + info[:32] + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
    inventory = scan(GOOD, plain_layer({"usr/bin/old": old, "usr/bin/broken": broken}))
    gaps = reasons(inventory.skipped)
    assert "before 1.18" in gaps["usr/bin/old"]
    assert "malformed" in gaps["usr/bin/broken"]
    assert_rest_scanned(inventory)


def test_a_berkeley_db_rpm_database_is_reported() -> None:
    layer = gzip_layer(
        {"var/lib/rpm/Packages": b"\x00\x06\x15\x61" + bytes(4000), "var/lib/rpm/rpmdb.sqlite": b"x"}
    )
    inventory = scan(GOOD, layer)
    gaps = reasons(inventory.skipped)
    assert "not SQLite" in gaps["var/lib/rpm/Packages"]
    assert "not an SQLite file" in gaps["var/lib/rpm/rpmdb.sqlite"]
    assert_rest_scanned(inventory)


def test_a_layer_full_of_unusable_paths_gives_a_bounded_report() -> None:
    files = {f"/abs/{index}": b"" for index in range(500)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in files:
            archive.addfile(tarfile.TarInfo(name))
    inventory = scan(Layer(buffer.getvalue(), TAR), GOOD)
    assert len(inventory.skipped) == 101
    assert inventory.skipped[-1].reason.startswith("400 more paths")
    assert_rest_scanned(inventory)


def test_a_layer_longer_than_its_declared_size_stops_at_the_stored_limit() -> None:
    big = gzip_tar_layer([("srv/data", 4 * MiB, os.urandom(MiB))])
    lying = dataclasses.replace(big.source(), size=1000)
    inventory = scan_image([lying, GOOD.source()], ScanLimits(max_layer_bytes=1 * MiB))
    assert inventory.skipped[0].layer == big.digest and "larger than 1 MiB" in inventory.skipped[0].reason
    assert_rest_scanned(inventory)


class FailingBody(io.RawIOBase):
    """A stored body whose connection drops after some bytes."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self.data, self.fail_after, self.position = data, fail_after, 0

    def read(self, size: int = -1) -> bytes:
        if self.position >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        chunk = self.data[self.position : self.position + min(size, self.fail_after - self.position)]
        self.position += len(chunk)
        return chunk


@pytest.mark.parametrize("fail_after", [0, 100_000], ids=["first-read", "mid-stream"])
def test_a_store_failure_is_not_a_skipped_layer_but_fails_the_scan(fail_after: int) -> None:
    """The store failing is not something the layer holds: the scan raises the stream's own
    error (to be retried), rather than report a gap that a retry would not have."""
    layer = gzip_tar_layer([("srv/data", 2 * MiB, os.urandom(MiB))])
    failing = dataclasses.replace(layer.source(), open=lambda: FailingBody(layer.data, fail_after))
    with pytest.raises(ConnectionResetError):
        scan_image([GOOD.source(), failing])


def test_a_jar_of_too_many_entries_is_not_opened() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(200_001):
            archive.writestr(f"{index:x}", b"")
    inventory = scan(GOOD, gzip_layer({"app/many.jar": buffer.getvalue()}))
    assert reasons(inventory.skipped) == {
        "app/many.jar": "archive declares 200001 entries, more than 200000: not read"
    }
    assert_rest_scanned(inventory)


def test_a_flood_of_packages_stops_the_scan_at_the_package_limit() -> None:
    manifest = b'{"name": "p%d", "version": "1"}'
    manifests = {f"app/node_modules/p{i}/package.json": manifest % i for i in range(30)}
    flood = gzip_layer(manifests)
    inventory = scan(flood, GOOD, limits=ScanLimits(max_packages=10))
    assert [(gap.layer, gap.path) for gap in inventory.skipped] == [(flood.digest, ""), (GOOD.digest, "")]
    assert "more than 10 packages" in inventory.skipped[0].reason
    assert len(inventory.packages) == 10
