"""RPM packages: the SQLite rpmdb (``rpmdb.sqlite``, rpm 4.16+: RHEL/Rocky/Alma 9, Fedora 33+).

The database is one file: it is written to a temporary file (bounded by
``ScanLimits.max_file_bytes`` like any identifying file), opened read-only with the standard
library's sqlite3, and its ``Packages`` table's header blobs are parsed here for NAME,
VERSION, RELEASE, EPOCH and ARCH. A header blob (rpm's headerImport, without the lead) is:
the index entry count and data size (big-endian int32s), the 16-byte index entries (tag,
type, offset, count), then the data they point into. Every offset is checked against the
blob: the database is as untrusted as the layer.

Berkeley DB (``Packages``, older RHEL/CentOS) and NDB (``Packages.db``, SUSE) databases are
not read: the report says so.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import tempfile

from skyport.scanning.catalogers import Candidate, Cataloger, Found, licenses

SQLITE_PATHS = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
OTHER_PATHS = ("var/lib/rpm/Packages", "var/lib/rpm/Packages.db", "usr/lib/sysimage/rpm/Packages.db")
SQLITE_MAGIC = b"SQLite format 3\0"

TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_LICENSE, TAG_ARCH = 1000, 1001, 1002, 1003, 1014, 1022
TYPE_INT32, TYPE_STRING, TYPE_I18NSTRING = 4, 6, 9
MAX_INDEX_ENTRIES = 1 << 16  # rpm's own limit on a header's tags


def header_tags(blob: bytes) -> dict[int, str | int]:
    """The tags this scanner needs from one header blob; ValueError if it is malformed."""
    if len(blob) < 8:
        raise ValueError("header shorter than its preamble")
    entries, data_size = struct.unpack_from(">ii", blob)
    data_start = 8 + 16 * entries
    if not 0 < entries <= MAX_INDEX_ENTRIES or data_size < 0 or data_start + data_size > len(blob):
        raise ValueError("header sizes do not fit the blob")
    data = blob[data_start : data_start + data_size]
    tags: dict[int, str | int] = {}
    for index in range(entries):
        tag, kind, offset, count = struct.unpack_from(">iiii", blob, 8 + 16 * index)
        if tag not in (TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_LICENSE, TAG_ARCH):
            continue
        if not 0 <= offset < len(data) or count < 1:
            raise ValueError(f"tag {tag} points outside the header")
        if kind in (TYPE_STRING, TYPE_I18NSTRING):
            end = data.find(b"\0", offset)
            if end < 0:
                raise ValueError(f"tag {tag}: unterminated string")
            tags[tag] = data[offset:end].decode("utf-8", errors="replace")
        elif kind == TYPE_INT32 and offset + 4 <= len(data):
            tags[tag] = struct.unpack_from(">i", data, offset)[0]
    return tags


def candidate(tags: dict[int, str | int]) -> Candidate | None:
    name, version, release = tags.get(TAG_NAME), tags.get(TAG_VERSION), tags.get(TAG_RELEASE)
    if not (isinstance(name, str) and isinstance(version, str) and isinstance(release, str)):
        return None
    if name == "gpg-pubkey":  # imported signing keys, recorded as a pseudo-package
        return None
    epoch, arch = tags.get(TAG_EPOCH), tags.get(TAG_ARCH)
    qualifiers = []
    if isinstance(arch, str) and arch:
        qualifiers.append(("arch", arch))
    if isinstance(epoch, int) and epoch:
        qualifiers.append(("epoch", str(epoch)))
    full = f"{epoch}:{version}-{release}" if isinstance(epoch, int) and epoch else f"{version}-{release}"
    return Candidate(
        "rpm",
        None,
        name,
        f"{version}-{release}",
        tuple(qualifiers),
        name=name,
        version=full,
        os_package=True,
        licenses=licenses(tags.get(TAG_LICENSE)),
    )


def read(path: str, data: bytes, _nested_limit: int) -> Found:
    if path in OTHER_PATHS:
        return Found(gaps=((path, "rpm database not SQLite (Berkeley DB or NDB): not read"),))
    if not data.startswith(SQLITE_MAGIC):
        return Found(gaps=((path, "rpm database is not an SQLite file"),))
    handle, scratch = tempfile.mkstemp(suffix=".sqlite")
    try:
        with os.fdopen(handle, "wb") as copy:
            copy.write(data)
        database = sqlite3.connect(f"file:{scratch}?mode=ro", uri=True)
        try:
            rows = database.execute("SELECT blob FROM Packages")
            candidates, bad = [], 0
            for (blob,) in rows:
                try:
                    found = candidate(header_tags(bytes(blob)))
                except (ValueError, TypeError, struct.error):
                    bad += 1
                    continue
                if found is not None:
                    candidates.append(found)
        finally:
            database.close()
    except sqlite3.Error as error:
        return Found(gaps=((path, f"rpm database unreadable: {error}"),))
    finally:
        os.unlink(scratch)
    gaps = ((path, f"{bad} malformed rpm header(s) not read"),) if bad else ()
    return Found(tuple(candidates), gaps=gaps)


CATALOGER = Cataloger("rpm", lambda path: path in SQLITE_PATHS or path in OTHER_PATHS, read)
