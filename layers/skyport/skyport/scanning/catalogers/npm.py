"""npm packages: ``package.json`` of a package directory under ``node_modules``
(``node_modules/<name>/`` or ``node_modules/@<scope>/<name>/``, at any depth). A
``package.json`` deeper inside a package (lodash's ``fp/package.json``) is not a package, nor
is one without a name and a version. The JSON is untrusted: its nesting is bounded before
parsing (Python's parser recurses)."""

from __future__ import annotations

import json
import re

from skyport.scanning.catalogers import NOTHING, Candidate, Cataloger, Found, text

_PACKAGE_JSON = re.compile(r"(?:^|/)node_modules/(?:@[^/]+/)?[^/@][^/]*/package\.json$")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
MAX_DEPTH = 64  # real package.json files nest a handful of levels
MAX_NAME = 214  # npm's own limit on a package name


def matches(path: str) -> bool:
    return bool(_PACKAGE_JSON.search(path))


def nesting(document: str) -> int:
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", _STRING.sub("", document)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def read(path: str, data: bytes, _nested_limit: int) -> Found:
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
    return Found((Candidate("npm", scope or None, bare, version, name=name, version=version),))


CATALOGER = Cataloger("npm", matches, read)
