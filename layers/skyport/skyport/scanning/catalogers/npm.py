"""npm packages: ``package.json`` of a package directory under ``node_modules``
(``node_modules/<name>/`` or ``node_modules/@<scope>/<name>/``, at any depth). A
``package.json`` deeper inside a package (lodash's ``fp/package.json``) is not a package, nor
is one without a name and a version. The JSON is untrusted: its nesting is bounded before
parsing (Python's parser recurses)."""

from __future__ import annotations

import json
import re

from skyport.scanning.catalogers import NOTHING, Candidate, Cataloger, Found, licenses, text

_PACKAGE_JSON = re.compile(r"(?:^|/)node_modules/(?:@[^/]+/)?[^/@][^/]*/package\.json$")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
MAX_DEPTH = 64  # real package.json files nest a handful of levels
MAX_BYTES = 4 << 20  # real ones are a few KiB; the nesting check and the parser stay cheap
MAX_NAME = 214  # npm's own limit on a package name


def matches(path: str) -> bool:
    return bool(_PACKAGE_JSON.search(path))


def nesting(document: str) -> int:
    depth = deepest = 0
    for bracket in re.finditer(r"[\[\]{}]", _STRING.sub("", document)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def read(path: str, data: bytes, _nested_limit: int) -> Found:
    if len(data) > MAX_BYTES:
        return Found(gaps=((path, f"package.json larger than {MAX_BYTES >> 20} MiB: not read"),))
    document = text(data)
    if nesting(document) > MAX_DEPTH:
        return Found(gaps=((path, f"package.json nests deeper than {MAX_DEPTH} levels: not read"),))
    try:
        manifest = json.loads(document)
    except ValueError as error:
        return Found(gaps=((path, f"package.json is not JSON: {error}"),))
    if not isinstance(manifest, dict):
        return NOTHING
    name, version = manifest.get("name"), manifest.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return NOTHING
    if len(name) > MAX_NAME or len(version) > 256:
        return Found(gaps=((path, "package.json name or version longer than npm allows"),))
    scope, _, bare = name.rpartition("/") if name.startswith("@") else ("", "", name)
    declared = manifest.get("license")
    if isinstance(declared, dict):  # the older {"type": "MIT", "url": ...} form
        declared = declared.get("type")
    candidate = Candidate(
        "npm",
        scope or None,
        bare,
        version,
        name=name,
        version=version,
        licenses=licenses(declared),
    )
    return Found((candidate,))


CATALOGER = Cataloger("npm", matches, read)
