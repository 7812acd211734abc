"""Alpine packages: ``lib/apk/db/installed`` (apk's installed database: stanzas of
``X:value`` lines; P name, V version, A arch, o origin). The origin (the source package,
``openssl`` for libcrypto3) is the purl's ``upstream`` qualifier, as Alpine's advisories
are per origin."""

from __future__ import annotations

from skyport.scanning.catalogers import Candidate, Cataloger, Found, licenses, stanzas, text

INSTALLED = "lib/apk/db/installed"


def read(path: str, data: bytes, _nested_limit: int) -> Found:
    candidates = []
    for stanza in stanzas(text(data)):
        fields: dict[str, str] = {}
        for line in stanza:
            if len(line) > 2 and line[1] == ":":
                fields.setdefault(line[0], line[2:].strip())
        name, version = fields.get("P", ""), fields.get("V", "")
        if not name or not version:
            continue
        qualifiers = []
        if fields.get("A"):
            qualifiers.append(("arch", fields["A"]))
        if fields.get("o") and fields["o"] != name:
            qualifiers.append(("upstream", fields["o"]))
        candidates.append(
            Candidate(
                "apk",
                None,
                name,
                version,
                tuple(qualifiers),
                name=name,
                version=version,
                os_package=True,
                licenses=licenses(fields.get("L")),
            )
        )
    return Found(tuple(candidates))


CATALOGER = Cataloger("apk", lambda path: path == INSTALLED, read)
