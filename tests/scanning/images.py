"""Images the scanning tests fabricate, with what a scan of each must find (issue 14).

Layers are built here from a dict of path -> content (bytes, or a :class:`Symlink` /
:class:`Hardlink`), as plain tar, gzip or zstd, whiteouts included (image-spec layer.md,
"Whiteouts": ``.wh.<name>`` deletes ``<name>``, ``.wh..wh..opq`` empties its directory of
what lower layers put there).

The expected packages are constants (name, version, purl, location) that the matcher's
sample OSV data is written against: change one here and the expected findings change.

- :data:`DEBIAN_PYTHON`: a Debian 12 base (dpkg status, one package removed but with its
  config files left, so not installed), a Python app layer (dist-info and egg-info), and a
  later layer whose whiteout deletes urllib3's dist-info: urllib3 is NOT expected.
- :data:`ALPINE_NODE`: an Alpine 3.19 base (zstd) with the apk database, a Node app layer,
  and a later layer with an opaque whiteout over ``node_modules/minimist`` that puts a newer
  minimist there (1.2.8 expected, 1.2.0 not) and a whiteout deleting left-pad.
- :data:`DISTROLESS_JAVA_GO`: a distroless-style Debian 12 (``dpkg/status.d``), a jar with
  log4j-core's ``pom.properties``, a fat jar with a nested jar, and a Go binary. There is no
  Go toolchain here, so the "binary" is filler bytes around a synthetic build info blob in
  Go 1.18+'s inline format (``\\xff Go buildinf:``, flags bit 2, varint-prefixed version
  and module info between the 16-byte sentinels), which is what a real binary carries.
- :data:`ROCKY_RPM`: a Rocky Linux 9 layer with an SQLite rpmdb (``rpmdb.sqlite``, the
  ``Packages`` table of header blobs), built here from RPM header tags.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sqlite3
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard
from skyport.scanning.layers import LayerSource
from skyport.scanning.model import Distro

TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Hardlink:
    target: str


Entry = bytes | Symlink | Hardlink


def tar_bytes(files: Mapping[str, Entry]) -> bytes:
    """An uncompressed tar of ``files`` in the given order (directories are implied, as
    many real layers leave them out)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.mode = 0o644
            if isinstance(content, Symlink):
                info.type, info.linkname = tarfile.SYMTYPE, content.target
                archive.addfile(info)
            elif isinstance(content, Hardlink):
                info.type, info.linkname = tarfile.LNKTYPE, content.target
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass(frozen=True)
class Layer:
    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def source(self) -> LayerSource:
        return LayerSource(self.digest, self.media_type, len(self.data), lambda: io.BytesIO(self.data))


def plain_layer(files: Mapping[str, Entry]) -> Layer:
    return Layer(tar_bytes(files), TAR)


def gzip_layer(files: Mapping[str, Entry]) -> Layer:
    return Layer(gzip.compress(tar_bytes(files), mtime=0), TAR_GZIP)


def zstd_layer(files: Mapping[str, Entry]) -> Layer:
    return Layer(zstandard.ZstdCompressor().compress(tar_bytes(files)), TAR_ZSTD)


@dataclass(frozen=True)
class Expected:
    name: str
    version: str
    purl: str
    location: str


@dataclass(frozen=True)
class Image:
    layers: tuple[Layer, ...]
    distro: Distro | None
    packages: frozenset[Expected]
    absent: frozenset[str]  # purls the image's lower layers hold but a whiteout removed

    def sources(self) -> list[LayerSource]:
        return [layer.source() for layer in self.layers]


# --- the identifying files ------------------------------------------------------------------


def os_release(id_: str, version_id: str, pretty_name: str) -> bytes:
    text = f'PRETTY_NAME="{pretty_name}"\nNAME="{pretty_name}"\nID={id_}\nVERSION_ID="{version_id}"\n'
    return text.encode()


def dpkg_stanza(
    name: str, version: str, *, arch: str = "amd64", source: str = "", status: str = "install ok installed"
) -> str:
    lines = [f"Package: {name}", f"Status: {status}", "Priority: optional", f"Architecture: {arch}"]
    if source:
        lines.append(f"Source: {source}")
    lines += [f"Version: {version}", "Description: a fabricated package", " with a continuation line", ""]
    return "\n".join(lines) + "\n"


def apk_entry(name: str, version: str, *, origin: str, arch: str = "x86_64", license: str = "MIT") -> str:
    return f"C:Q1fabricated=\nP:{name}\nV:{version}\nA:{arch}\nS:1000\nL:{license}\no:{origin}\n\n"


def python_metadata(name: str, version: str) -> bytes:
    text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: fabricated\n\nLong text.\n"
    return text.encode()


def package_json(name: str, version: str) -> bytes:
    return json.dumps({"name": name, "version": version, "license": "MIT"}).encode()


def pom_properties(group: str, artifact: str, version: str) -> bytes:
    return f"#Generated by Maven\nversion={version}\ngroupId={group}\nartifactId={artifact}\n".encode()


def jar(entries: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# Go 1.18+ build info: runtime/debug's modinfo is framed by these sentinels.
GO_MODINFO_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
GO_MODINFO_END = bytes.fromhex("f932433186182072008242104116d8f2")


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def go_buildinfo(go_version: str, modinfo: str) -> bytes:
    """The ``.go.buildinfo`` section of a Go 1.18+ binary (debug/buildinfo's format): a
    32-byte header (magic, pointer size, flags with bit 2 "strings inline"), then the Go
    version and the module info as uvarint-length-prefixed strings."""
    header = b"\xff Go buildinf:" + bytes([8, 0x2]) + bytes(16)
    info = GO_MODINFO_START + modinfo.encode() + GO_MODINFO_END
    return header + _uvarint(len(go_version)) + go_version.encode() + _uvarint(len(info)) + info


def go_binary(go_version: str, modinfo: str, *, filler: int = 300_000) -> bytes:
    """A stand-in ELF: filler bytes, the build info at a 16-byte boundary, more filler."""
    before = b"\x7fELF" + bytes(filler - 4)
    return before + go_buildinfo(go_version, modinfo) + b"\x90" * filler


def rpm_header_blob(tags: Mapping[int, str | int]) -> bytes:
    """An RPM header as rpmdb.sqlite stores it (no lead, no magic): entry count, data
    length, 16-byte index entries (tag, type, offset, count), then the data store.
    STRING (6) tags are NUL-terminated; INT32 (4) tags are 4-byte aligned, big-endian."""
    index, store = [], bytearray()
    for tag, value in tags.items():
        if isinstance(value, int):
            store.extend(bytes(-len(store) % 4))
            index.append(struct.pack(">iiii", tag, 4, len(store), 1))
            store.extend(struct.pack(">i", value))
        else:
            index.append(struct.pack(">iiii", tag, 6, len(store), 1))
            store.extend(value.encode() + b"\0")
    return struct.pack(">ii", len(index), len(store)) + b"".join(index) + bytes(store)


def rpmdb_sqlite(packages: list[dict[int, str | int]]) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "rpmdb.sqlite"
        database = sqlite3.connect(path)
        database.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        rows = [(rpm_header_blob(tags),) for tags in packages]
        database.executemany("INSERT INTO Packages (blob) VALUES (?)", rows)
        database.commit()
        database.close()
        return path.read_bytes()


RPMTAG_NAME, RPMTAG_VERSION, RPMTAG_RELEASE, RPMTAG_EPOCH, RPMTAG_ARCH = 1000, 1001, 1002, 1003, 1022


# --- 1. Debian + Python, with a whiteout --------------------------------------------------

DEBIAN_12 = Distro("debian", "12", "Debian GNU/Linux 12 (bookworm)")
SITE = "usr/lib/python3/dist-packages"
DPKG_STATUS = "var/lib/dpkg/status"

DEBIAN_PACKAGES = frozenset(
    {
        Expected(
            "openssl",
            "3.0.11-1~deb12u1",
            "pkg:deb/debian/openssl@3.0.11-1~deb12u1?arch=amd64&distro=debian-12",
            DPKG_STATUS,
        ),
        Expected(
            "zlib1g",
            "1:1.2.13.dfsg-1",
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib",
            DPKG_STATUS,
        ),
        Expected(
            "libc6",
            "2.36-9+deb12u3",
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=glibc",
            DPKG_STATUS,
        ),
    }
)
PYTHON_PACKAGES = frozenset(
    {
        Expected(
            "requests", "2.25.0", "pkg:pypi/requests@2.25.0", f"{SITE}/requests-2.25.0.dist-info/METADATA"
        ),
        Expected("Jinja2", "2.10", "pkg:pypi/jinja2@2.10", f"{SITE}/Jinja2-2.10.dist-info/METADATA"),
        Expected("PyYAML", "5.3.1", "pkg:pypi/pyyaml@5.3.1", f"{SITE}/PyYAML-5.3.1.egg-info/PKG-INFO"),
    }
)
URLLIB3_DELETED = "pkg:pypi/urllib3@1.24.1"

DEBIAN_PYTHON = Image(
    layers=(
        gzip_layer(
            {
                "etc/os-release": Symlink("../usr/lib/os-release"),
                "usr/lib/os-release": os_release("debian", "12", DEBIAN_12.pretty_name),
                DPKG_STATUS: (
                    dpkg_stanza("openssl", "3.0.11-1~deb12u1")
                    + dpkg_stanza("zlib1g", "1:1.2.13.dfsg-1", source="zlib")
                    + dpkg_stanza("libc6", "2.36-9+deb12u3", source="glibc")
                    # Removed, its config files kept: not installed, not listed.
                    + dpkg_stanza("curl", "7.88.1-10", status="deinstall ok config-files")
                ).encode(),
                "usr/bin/openssl": b"\x7fELF not really",
            }
        ),
        gzip_layer(
            {
                f"{SITE}/requests-2.25.0.dist-info/METADATA": python_metadata("requests", "2.25.0"),
                f"{SITE}/requests-2.25.0.dist-info/RECORD": b"requests/__init__.py,,\n",
                f"{SITE}/Jinja2-2.10.dist-info/METADATA": python_metadata("Jinja2", "2.10"),
                f"{SITE}/urllib3-1.24.1.dist-info/METADATA": python_metadata("urllib3", "1.24.1"),
                f"{SITE}/PyYAML-5.3.1.egg-info/PKG-INFO": python_metadata("PyYAML", "5.3.1"),
                "app/main.py": b"print('hello')\n",
            }
        ),
        plain_layer({f"{SITE}/.wh.urllib3-1.24.1.dist-info": b"", "app/config.py": b"DEBUG = False\n"}),
    ),
    distro=DEBIAN_12,
    packages=DEBIAN_PACKAGES | PYTHON_PACKAGES,
    absent=frozenset({URLLIB3_DELETED, "pkg:deb/debian/curl@7.88.1-10?arch=amd64&distro=debian-12"}),
)


# --- 2. Alpine + Node, with an opaque whiteout ----------------------------------------------

ALPINE_319 = Distro("alpine", "3.19.1", "Alpine Linux v3.19")
APK_DB = "lib/apk/db/installed"
NODE_MODULES = "app/node_modules"

ALPINE_PACKAGES = frozenset(
    {
        Expected(
            "busybox",
            "1.36.1-r15",
            "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1",
            APK_DB,
        ),
        Expected(
            "musl",
            "1.2.4_git20230717-r4",
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1",
            APK_DB,
        ),
        Expected(
            "libcrypto3",
            "3.1.4-r2",
            "pkg:apk/alpine/libcrypto3@3.1.4-r2?arch=x86_64&distro=alpine-3.19.1&upstream=openssl",
            APK_DB,
        ),
        Expected(
            "libssl3",
            "3.1.4-r2",
            "pkg:apk/alpine/libssl3@3.1.4-r2?arch=x86_64&distro=alpine-3.19.1&upstream=openssl",
            APK_DB,
        ),
    }
)
NODE_PACKAGES = frozenset(
    {
        Expected("lodash", "4.17.15", "pkg:npm/lodash@4.17.15", f"{NODE_MODULES}/lodash/package.json"),
        Expected("minimist", "1.2.8", "pkg:npm/minimist@1.2.8", f"{NODE_MODULES}/minimist/package.json"),
        Expected(
            "@babel/traverse",
            "7.22.0",
            "pkg:npm/%40babel/traverse@7.22.0",
            f"{NODE_MODULES}/@babel/traverse/package.json",
        ),
    }
)
MINIMIST_REPLACED = "pkg:npm/minimist@1.2.0"
LEFT_PAD_DELETED = "pkg:npm/left-pad@1.3.0"

ALPINE_NODE = Image(
    layers=(
        zstd_layer(
            {
                "etc/os-release": os_release("alpine", "3.19.1", ALPINE_319.pretty_name),
                APK_DB: (
                    apk_entry("busybox", "1.36.1-r15", origin="busybox", license="GPL-2.0-only")
                    + apk_entry("musl", "1.2.4_git20230717-r4", origin="musl")
                    + apk_entry("libcrypto3", "3.1.4-r2", origin="openssl")
                    + apk_entry("libssl3", "3.1.4-r2", origin="openssl")
                ).encode(),
            }
        ),
        gzip_layer(
            {
                f"{NODE_MODULES}/lodash/package.json": package_json("lodash", "4.17.15"),
                # lodash ships package.json files without a version below it: not packages.
                f"{NODE_MODULES}/lodash/fp/package.json": b'{"main": "../fp.js"}',
                f"{NODE_MODULES}/minimist/package.json": package_json("minimist", "1.2.0"),
                f"{NODE_MODULES}/minimist/index.js": b"module.exports = {};\n",
                f"{NODE_MODULES}/left-pad/package.json": package_json("left-pad", "1.3.0"),
                f"{NODE_MODULES}/@babel/traverse/package.json": package_json("@babel/traverse", "7.22.0"),
                "app/package.json": b'{"name": "the-app", "version": "1.0.0"}',  # not under node_modules
            }
        ),
        gzip_layer(
            {
                f"{NODE_MODULES}/minimist/.wh..wh..opq": b"",
                f"{NODE_MODULES}/minimist/package.json": package_json("minimist", "1.2.8"),
                f"{NODE_MODULES}/.wh.left-pad": b"",
            }
        ),
    ),
    distro=ALPINE_319,
    packages=ALPINE_PACKAGES | NODE_PACKAGES,
    absent=frozenset({MINIMIST_REPLACED, LEFT_PAD_DELETED, "pkg:npm/the-app@1.0.0"}),
)


# --- 3. Distroless Debian + Java + Go -------------------------------------------------------

STATUS_D = "var/lib/dpkg/status.d"
GO_APP = "usr/local/bin/app"
GO_MODINFO = (
    "path\texample.com/app\n"
    "mod\texample.com/app\t(devel)\t\n"
    "dep\tgithub.com/gin-gonic/gin\tv1.7.0\th1:jGFD3Z8pZRVAvLv1mV0XhmHUhP5mOzF1/uJBVRBjsmY=\n"
    "dep\tgolang.org/x/text\tv0.3.7\th1:olpwvP2KacW1ZWvsR7uQhoyTYvKAupfQrRGBFM352Gk=\n"
    "dep\tgolang.org/x/net\tv0.0.0-20220722155237-a158d28d115b\th1:fabricated=\n"
    "=>\tgolang.org/x/net\tv0.7.0\th1:rJrUqqhjsgNp7KqAIc25s9pZnjU7TUcSY7HcVZjdn1g=\n"
    "build\t-compiler=gc\n"
)
JAVA_PACKAGES = frozenset(
    {
        Expected(
            "log4j-core",
            "2.14.1",
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
            "app/lib/log4j-core-2.14.1.jar",
        ),
        Expected("app", "1.0.0", "pkg:maven/com.example/app@1.0.0", "app/app.jar"),
        Expected(
            "jackson-databind",
            "2.9.8",
            "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.8",
            "app/app.jar!BOOT-INF/lib/jackson-databind-2.9.8.jar",
        ),
    }
)
GO_PACKAGES = frozenset(
    {
        Expected("stdlib", "v1.20.1", "pkg:golang/stdlib@v1.20.1", GO_APP),
        Expected("github.com/gin-gonic/gin", "v1.7.0", "pkg:golang/github.com/gin-gonic/gin@v1.7.0", GO_APP),
        Expected("golang.org/x/text", "v0.3.7", "pkg:golang/golang.org/x/text@v0.3.7", GO_APP),
        # A replaced module: the replacement is what the binary holds.
        Expected("golang.org/x/net", "v0.7.0", "pkg:golang/golang.org/x/net@v0.7.0", GO_APP),
    }
)
DISTROLESS_PACKAGES = frozenset(
    {
        Expected(
            "tzdata",
            "2024a-0+deb12u1",
            "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12",
            f"{STATUS_D}/tzdata",
        ),
        Expected(
            "libssl3",
            "3.0.11-1~deb12u2",
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl",
            f"{STATUS_D}/libssl3",
        ),
    }
)

DISTROLESS_JAVA_GO = Image(
    layers=(
        plain_layer(
            {
                "etc/os-release": os_release("debian", "12", DEBIAN_12.pretty_name),
                f"{STATUS_D}/tzdata": dpkg_stanza("tzdata", "2024a-0+deb12u1", arch="all").encode(),
                f"{STATUS_D}/libssl3": dpkg_stanza("libssl3", "3.0.11-1~deb12u2", source="openssl").encode(),
                f"{STATUS_D}/libssl3.md5sums": b"d41d8cd98f00b204e9800998ecf8427e  usr/lib/libssl.so.3\n",
            }
        ),
        gzip_layer(
            {
                "app/lib/log4j-core-2.14.1.jar": jar(
                    {
                        "META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n",
                        "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties": pom_properties(
                            "org.apache.logging.log4j", "log4j-core", "2.14.1"
                        ),
                        "org/apache/logging/log4j/core/Logger.class": b"\xca\xfe\xba\xbe",
                    }
                ),
                "app/app.jar": jar(
                    {
                        "META-INF/maven/com.example/app/pom.properties": pom_properties(
                            "com.example", "app", "1.0.0"
                        ),
                        "BOOT-INF/lib/jackson-databind-2.9.8.jar": jar(
                            {
                                "META-INF/maven/com.fasterxml.jackson.core/jackson-databind/pom.properties": (
                                    pom_properties("com.fasterxml.jackson.core", "jackson-databind", "2.9.8")
                                )
                            }
                        ),
                    }
                ),
                GO_APP: go_binary("go1.20.1", GO_MODINFO),
            }
        ),
    ),
    distro=DEBIAN_12,
    packages=DISTROLESS_PACKAGES | JAVA_PACKAGES | GO_PACKAGES,
    absent=frozenset({"pkg:golang/golang.org/x/net@v0.0.0-20220722155237-a158d28d115b"}),
)


# --- 4. Rocky Linux with an SQLite rpmdb ----------------------------------------------------

ROCKY_9 = Distro("rocky", "9.3", "Rocky Linux 9.3 (Blue Onyx)")
RPMDB = "var/lib/rpm/rpmdb.sqlite"
RPM_PACKAGES = frozenset(
    {
        Expected(
            "openssl-libs",
            "1:3.0.7-25.el9_3",
            "pkg:rpm/rocky/openssl-libs@3.0.7-25.el9_3?arch=x86_64&distro=rocky-9.3&epoch=1",
            RPMDB,
        ),
        Expected(
            "bash", "5.1.8-6.el9_1", "pkg:rpm/rocky/bash@5.1.8-6.el9_1?arch=x86_64&distro=rocky-9.3", RPMDB
        ),
    }
)

ROCKY_RPM = Image(
    layers=(
        gzip_layer(
            {
                "etc/os-release": os_release("rocky", "9.3", ROCKY_9.pretty_name),
                RPMDB: rpmdb_sqlite(
                    [
                        {
                            RPMTAG_NAME: "openssl-libs",
                            RPMTAG_VERSION: "3.0.7",
                            RPMTAG_RELEASE: "25.el9_3",
                            RPMTAG_EPOCH: 1,
                            RPMTAG_ARCH: "x86_64",
                        },
                        {
                            RPMTAG_NAME: "bash",
                            RPMTAG_VERSION: "5.1.8",
                            RPMTAG_RELEASE: "6.el9_1",
                            RPMTAG_ARCH: "x86_64",
                        },
                        # The pseudo-package of imported GPG keys: no architecture, not software.
                        {RPMTAG_NAME: "gpg-pubkey", RPMTAG_VERSION: "350d275d", RPMTAG_RELEASE: "6279464b"},
                    ]
                ),
            }
        ),
    ),
    distro=ROCKY_9,
    packages=RPM_PACKAGES,
    absent=frozenset({"pkg:rpm/rocky/gpg-pubkey@350d275d-6279464b?distro=rocky-9.3"}),
)

IMAGES = {
    "debian-python": DEBIAN_PYTHON,
    "alpine-node": ALPINE_NODE,
    "distroless-java-go": DISTROLESS_JAVA_GO,
    "rocky-rpm": ROCKY_RPM,
}


# --- big layers, written as a stream ----------------------------------------------------------


def write_gzip_tar(out: BinaryIO, files: Iterable[tuple[str, int, bytes]], level: int = 1) -> None:
    """A gzip'd tar of (path, size, block) written to ``out`` as it is made: each file's content
    is ``block`` repeated to ``size`` bytes. Nothing holds the whole layer, so a test can make
    a gzip bomb (zeros compress ~1000:1) or a layer of hundreds of MiB."""
    deflate = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for path, size, block in files:
        info = tarfile.TarInfo(path)
        info.size, info.mode = size, 0o644
        out.write(deflate.compress(info.tobuf(format=tarfile.PAX_FORMAT)))
        left = size
        while left:
            piece = block[: min(left, len(block))]
            out.write(deflate.compress(piece))
            left -= len(piece)
        out.write(deflate.compress(bytes(-size % tarfile.BLOCKSIZE)))
    out.write(deflate.compress(bytes(2 * tarfile.BLOCKSIZE)))
    out.write(deflate.flush())


def gzip_tar_layer(files: Iterable[tuple[str, int, bytes]]) -> Layer:
    buffer = io.BytesIO()
    write_gzip_tar(buffer, files)
    return Layer(buffer.getvalue(), TAR_GZIP)
