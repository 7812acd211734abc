"""Debian packages: dpkg's ``var/lib/dpkg/status`` and distroless images' one file per package
in ``var/lib/dpkg/status.d/`` (deb-control(5) stanzas).

A stanza is installed when its ``Status`` says so (a removed package keeps a stanza with
``deinstall ok config-files``); ``status.d`` files have no Status: what is there is
installed. The source package, when it differs (``Source: glibc`` for libc6), is the purl's
``upstream`` qualifier: Debian's advisories are per source package.
"""

from __future__ import annotations

from skyport.scanning.catalogers import Candidate, Cataloger, Found, stanzas, text

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"


def matches(path: str) -> bool:
    if path == STATUS:
        return True
    name = path[len(STATUS_D) :] if path.startswith(STATUS_D) else ""
    # status.d also holds "<package>.md5sums" beside each package's file.
    return bool(name) and "/" not in name and not name.endswith(".md5sums")


def fields_of(lines: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        if line[:1] in (" ", "\t") or ":" not in line:
            continue  # a continuation line (Description, Conffiles): not needed
        key, value = line.split(":", 1)
        fields[key.strip()] = value.strip()
    return fields


def installed(fields: dict[str, str]) -> bool:
    status = fields.get("Status")
    return status is None or status.split()[-1:] == ["installed"]


def read(path: str, data: bytes, _nested_limit: int) -> Found:
    candidates = []
    for stanza in stanzas(text(data)):
        fields = fields_of(stanza)
        name, version = fields.get("Package", ""), fields.get("Version", "")
        if not name or not version or not installed(fields):
            continue
        qualifiers = []
        if fields.get("Architecture"):
            qualifiers.append(("arch", fields["Architecture"]))
        source = fields.get("Source", "").split(" ", 1)[0]  # "zlib (1:1.2.13)" -> "zlib"
        if source and source != name:
            qualifiers.append(("upstream", source))
        candidates.append(
            Candidate(
                "deb", None, name, version, tuple(qualifiers), name=name, version=version, os_package=True
            )
        )
    return Found(tuple(candidates))


CATALOGER = Cataloger("dpkg", matches, read)
