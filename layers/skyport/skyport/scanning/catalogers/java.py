"""Java archives: jars, wars and ears, by the ``META-INF/maven/<group>/<artifact>/pom.properties``
files Maven puts in them (shaded jars carry one per library they hold). A jar inside the
jar (Spring Boot's ``BOOT-INF/lib``, a war's ``WEB-INF/lib``) is opened too, one level deep.

The archive is untrusted: entries are read with a bound (``pom.properties`` a few KiB, a
nested jar ``ScanLimits.max_jar_bytes``), never by the size its header claims, so a zip
bomb's entry stops at the bound and is reported.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib

from skyport.scanning.catalogers import Candidate, Cataloger, Found

ARCHIVE_SUFFIXES = (".jar", ".war", ".ear")
_POM_PROPERTIES = re.compile(r"^META-INF/maven/[^/]+/[^/]+/pom\.properties$")
MAX_POM_PROPERTIES = 64 * 1024
# zipfile parses the whole central directory into ZipInfo objects (~0.5 KiB each) when it
# opens an archive: the count is checked first. Real jars, fat ones included, hold far fewer.
MAX_ENTRIES = 200_000
COORDINATES = ("groupId", "artifactId", "version")
# Reading a broken or hostile zip raises any of these.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, ValueError,
              OSError, EOFError, zlib.error)  # fmt: skip


def matches(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def properties(content: str) -> dict[str, str]:
    """java.util.Properties' plain form: key=value or key:value lines, # and ! comments."""
    values: dict[str, str] = {}
    for line in content.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)", line)
        if match:
            values[match.group(1)] = match.group(2).strip()
    return values


def read_bounded(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes | None:
    """The entry's content, or None if it expands beyond ``limit`` (whatever it declares)."""
    if info.file_size > limit:
        return None
    with archive.open(info) as entry:
        content = entry.read(limit + 1)
    return None if len(content) > limit else content


def entry_count(data: bytes) -> int | None:
    """The entry count the archive's end record declares (None without one), read before
    zipfile parses every entry. zipfile's own reader of that record is used: a private
    name, stable since Python 2."""
    record = zipfile._EndRecData(io.BytesIO(data))
    return None if record is None else record[zipfile._ECD_ENTRIES_TOTAL]


def scan_archive(location: str, data: bytes, nested_limit: int, depth: int) -> Found:
    candidates: list[Candidate] = []
    gaps: list[tuple[str, str]] = []
    try:
        entries = entry_count(data)
        if entries is not None and entries > MAX_ENTRIES:
            reason = f"archive declares {entries} entries, more than {MAX_ENTRIES}: not read"
            return Found(gaps=((location, reason),))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                where = f"{location}!{info.filename}"
                if _POM_PROPERTIES.match(info.filename):
                    content = read_bounded(archive, info, MAX_POM_PROPERTIES)
                    if content is None:
                        reason = f"expands beyond {MAX_POM_PROPERTIES} bytes (a zip bomb?): not read"
                        gaps.append((where, reason))
                        continue
                    values = properties(content.decode("utf-8", errors="replace"))
                    group, artifact, version = (values.get(key, "") for key in COORDINATES)
                    if group and artifact and version:
                        candidates.append(
                            Candidate(
                                "maven",
                                group,
                                artifact,
                                version,
                                name=artifact,
                                version=version,
                                location=location,
                            )  # fmt: skip
                        )
                elif matches(info.filename) and not info.is_dir():
                    if depth >= 1:
                        gaps.append((where, "a jar nested two levels deep: not opened"))
                        continue
                    nested = read_bounded(archive, info, nested_limit)
                    if nested is None:
                        reason = f"nested archive expands beyond {nested_limit} bytes: not opened"
                        gaps.append((where, reason))
                        continue
                    found = scan_archive(where, nested, nested_limit, depth + 1)
                    candidates.extend(found.candidates)
                    gaps.extend(found.gaps)
    except ZIP_ERRORS as error:
        gaps.append((location, f"unreadable {location.rsplit('.', 1)[-1]} archive: {error}"))
    return Found(tuple(candidates), gaps=tuple(gaps))


def read(path: str, data: bytes, nested_limit: int) -> Found:
    return scan_archive(path, data, nested_limit, 0)


CATALOGER = Cataloger("java", matches, read, large=True)
