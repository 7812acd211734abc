"""Each source of package data on its edge cases, through the scanner's public surface
(``scan_image`` on layers built by the test)."""

from __future__ import annotations

import sqlite3
import struct
import tempfile
from pathlib import Path

from skyport.scanning.image import scan_image

from .images import (
    RPMTAG_ARCH,
    RPMTAG_NAME,
    RPMTAG_RELEASE,
    RPMTAG_VERSION,
    go_binary,
    gzip_layer,
    os_release,
    rpm_header_blob,
    rpmdb_sqlite,
)


def packages(files: dict) -> list[tuple[str, str, str]]:
    inventory = scan_image([gzip_layer(files).source()])
    return [(package.name, package.version, package.purl) for package in inventory.packages]


def test_ubuntu_packages_are_named_by_the_distro_and_os_release_quoting_is_read() -> None:
    files = {
        "etc/os-release": b"NAME=\"Ubuntu\"\nID=ubuntu\nVERSION_ID='22.04'\n# comment\nbroken line\n",
        "var/lib/dpkg/status": (
            b"Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\n"
            b"Source: openssl (3.0.2-0ubuntu1)\n"
            b"Version: 3.0.2-0ubuntu1.15\nDescription: x\n more\n .\n\n"
            b"Package: half\nStatus: install reinstreq half-installed\nVersion: 1\n\n"
            b"Package: held\nStatus: hold ok installed\nVersion: 2\n\n"
            b"Package: noversion\nStatus: install ok installed\n\n"
        ),
    }
    assert packages(files) == [
        ("held", "2", "pkg:deb/ubuntu/held@2?distro=ubuntu-22.04"),
        (
            "libssl3",
            "3.0.2-0ubuntu1.15",
            "pkg:deb/ubuntu/libssl3@3.0.2-0ubuntu1.15?arch=amd64&distro=ubuntu-22.04&upstream=openssl",
        ),
    ]


def test_etc_os_release_wins_over_usr_lib_os_release() -> None:
    files = {
        "usr/lib/os-release": os_release("debian", "11", "Debian 11"),
        "etc/os-release": os_release("debian", "12", "Debian 12"),
    }
    assert scan_image([gzip_layer(files).source()]).distro.version_id == "12"


def test_python_names_are_normalised_for_the_purl_only() -> None:
    site = "usr/local/lib/python3.12/site-packages"
    files = {
        f"{site}/zope.interface-6.0.dist-info/METADATA": b"Name: zope.interface\nVersion: 6.0\n\nbody",
        f"{site}/Foo__Bar-1.0.egg-info/PKG-INFO": b"Metadata-Version: 1.0\nName: Foo__Bar\nVersion: 1.0\n",
        f"{site}/noversion-1.0.dist-info/METADATA": b"Name: noversion\n",
        f"{site}/other.dist-info/RECORD": b"Name: not-metadata\nVersion: 1\n",
    }
    assert packages(files) == [
        ("Foo__Bar", "1.0", "pkg:pypi/foo-bar@1.0"),
        ("zope.interface", "6.0", "pkg:pypi/zope-interface@6.0"),
    ]


def test_npm_packages_nested_in_node_modules_count_and_inner_files_do_not() -> None:
    files = {
        "app/node_modules/a/package.json": b'{"name": "a", "version": "1.0.0"}',
        "app/node_modules/a/node_modules/b/package.json": b'{"name": "b", "version": "2.0.0"}',
        "app/node_modules/a/lib/package.json": b'{"name": "inner", "version": "9.9.9"}',
        "app/node_modules/@scope/c/package.json": b'{"name": "@scope/c", "version": "3.0.0"}',
        "app/node_modules/@scope/package.json": b'{"name": "scope-dir", "version": "1.0.0"}',
        "usr/lib/node_modules/npm/package.json": b'{"name": "npm", "version": "10.2.4"}',
    }
    assert packages(files) == [
        ("@scope/c", "3.0.0", "pkg:npm/%40scope/c@3.0.0"),
        ("a", "1.0.0", "pkg:npm/a@1.0.0"),
        ("b", "2.0.0", "pkg:npm/b@2.0.0"),
        ("npm", "10.2.4", "pkg:npm/npm@10.2.4"),
    ]


def test_go_build_info_main_module_replacements_and_toolchain() -> None:
    modinfo = (
        "path\texample.com/cmd/tool\n"
        "mod\texample.com/tool\tv1.4.0\th1:x=\n"
        "dep\texample.com/local\tv1.0.0\th1:y=\n"
        "=>\t../local\t\t\n"
        "dep\tgopkg.in/yaml.v3\tv3.0.1\th1:z=\n"
    )
    files = {
        "usr/bin/tool": go_binary("go1.22.1 X:boringcrypto", modinfo, filler=8192),
        "usr/bin/devel": go_binary("devel go1.23-abcdef", "path\tx\nmod\tx\t(devel)\t\n", filler=8192),
        "usr/bin/notgo": b"\x7fELF" + bytes(70_000),
    }
    assert packages(files) == [
        ("example.com/tool", "v1.4.0", "pkg:golang/example.com/tool@v1.4.0"),
        ("gopkg.in/yaml.v3", "v3.0.1", "pkg:golang/gopkg.in/yaml.v3@v3.0.1"),
        ("stdlib", "v1.22.1", "pkg:golang/stdlib@v1.22.1"),
    ]


def test_go_build_info_is_found_across_read_chunks() -> None:
    # The search reads 4 bytes, then 1 MiB at a time: the magic at 1 MiB straddles two reads.
    binary = go_binary("go1.21.5", "path\tx\n", filler=1 << 20)
    assert packages({"usr/bin/x": binary}) == [("stdlib", "v1.21.5", "pkg:golang/stdlib@v1.21.5")]


def test_rpm_headers_that_lie_about_their_sizes_are_counted_not_trusted() -> None:
    good = {RPMTAG_NAME: "bash", RPMTAG_VERSION: "5.1.8", RPMTAG_RELEASE: "6.el9", RPMTAG_ARCH: "x86_64"}
    blob = rpm_header_blob(good)
    lying_count = struct.pack(">ii", 1 << 20, 8) + blob[8:]
    pointing_out = blob[:8] + struct.pack(">iiii", RPMTAG_NAME, 6, 10_000, 1) + blob[24:]
    database = rpmdb_sqlite([good])
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "rpmdb.sqlite"
        path.write_bytes(database)
        connection = sqlite3.connect(path)
        connection.executemany(
            "INSERT INTO Packages (blob) VALUES (?)", [(lying_count,), (pointing_out,), (b"x",)]
        )
        connection.commit()
        connection.close()
        database = path.read_bytes()

    files = {
        "etc/os-release": os_release("almalinux", "9.3", "AlmaLinux 9.3"),
        "usr/lib/sysimage/rpm/rpmdb.sqlite": database,
    }
    inventory = scan_image([gzip_layer(files).source()])
    assert [package.purl for package in inventory.packages] == [
        "pkg:rpm/almalinux/bash@5.1.8-6.el9?arch=x86_64&distro=almalinux-9.3"
    ]
    assert [gap.reason for gap in inventory.skipped] == ["3 malformed rpm header(s) not read"]


def test_names_no_purl_can_hold_are_reported() -> None:
    scoped = "app/node_modules/@scope/x/package.json"
    modinfo = "path\tx\nmod\tx\t(devel)\t\ndep\texample.com/\tv1.0.0\t\n"
    files = {
        scoped: b'{"name": "@scope/", "version": "1.0.0"}',
        "app/node_modules/ok/package.json": b'{"name": "ok", "version": "1.0.0"}',
        "usr/bin/tool": go_binary("go1.22.1", modinfo, filler=8192),
    }
    inventory = scan_image([gzip_layer(files).source()])
    purls = [package.purl for package in inventory.packages]
    assert purls == ["pkg:golang/stdlib@v1.22.1", "pkg:npm/ok@1.0.0"]
    assert {gap.path for gap in inventory.skipped} == {scoped, "usr/bin/tool"}


def test_declared_licenses_are_kept_when_they_are_names() -> None:
    site = "usr/lib/python3/dist-packages"
    rpm = {RPMTAG_NAME: "bash", RPMTAG_VERSION: "5.1.8", RPMTAG_RELEASE: "6.el9", RPMTAG_ARCH: "x86_64"}
    modules = "app/node_modules"
    files = {
        "lib/apk/db/installed": b"P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\n",
        f"{modules}/a/package.json": b'{"name": "a", "version": "1", "license": "(MIT OR Apache-2.0)"}',
        f"{modules}/b/package.json": b'{"name": "b", "version": "1", "license": {"type": "BSD-3-Clause"}}',
        f"{modules}/c/package.json": b'{"name": "c", "version": "1", "license": ["not", "a", "name"]}',
        f"{site}/x-1.dist-info/METADATA": b"Name: x\nVersion: 1\nLicense-Expression: MIT\nLicense: no\n",
        f"{site}/y-1.dist-info/METADATA": b"Name: y\nVersion: 1\nLicense: " + b"long text " * 40 + b"\n",
        "var/lib/rpm/rpmdb.sqlite": rpmdb_sqlite([{**rpm, 1014: "GPL-3.0-or-later"}]),
    }
    inventory = scan_image([gzip_layer(files).source()])
    assert {package.name: package.licenses for package in inventory.packages} == {
        "musl": ("MIT",),
        "a": ("(MIT OR Apache-2.0)",),
        "b": ("BSD-3-Clause",),
        "c": (),
        "x": ("MIT",),
        "y": (),
        "bash": ("GPL-3.0-or-later",),
    }


def test_a_package_json_bigger_than_any_real_one_is_not_parsed() -> None:
    huge = b'{"name": "huge", "version": "1.0.0", "x": "' + b"[" * (5 << 20) + b'"}'
    inventory = scan_image([gzip_layer({"app/node_modules/huge/package.json": huge}).source()])
    assert inventory.packages == []
    assert [gap.reason for gap in inventory.skipped] == ["package.json larger than 4 MiB: not read"]
