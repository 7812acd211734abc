"""Python distributions: ``*.dist-info/METADATA`` (wheels, pip) and ``*.egg-info/PKG-INFO``
(setuptools), both in the core metadata format (email headers; only Name and Version are
read). The purl's name is normalised as PEP 503 says (runs of ``-_.`` become ``-``, lower
case), which is how PyPI and OSV name a project."""

from __future__ import annotations

import re
from email.parser import HeaderParser
from email.policy import compat32

from skyport.scanning.catalogers import NOTHING, Candidate, Cataloger, Found, licenses, text


def matches(path: str) -> bool:
    directory, _, name = path.rpartition("/")
    return (name == "METADATA" and directory.endswith(".dist-info")) or (
        name == "PKG-INFO" and directory.endswith(".egg-info")
    )


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read(path: str, data: bytes, _nested_limit: int) -> Found:
    headers = HeaderParser(policy=compat32).parsestr(text(data), headersonly=True)
    name, version = str(headers.get("Name") or "").strip(), str(headers.get("Version") or "").strip()
    if not name or not version:
        return NOTHING
    # PEP 639's License-Expression, else the older free-text License when it is a name.
    declared = licenses(str(headers.get("License-Expression") or headers.get("License") or ""))
    candidate = Candidate(
        "pypi",
        None,
        normalise(name),
        version,
        name=name,
        version=version,
        licenses=declared,
    )
    return Found((candidate,))


CATALOGER = Cataloger("python", matches, read)
