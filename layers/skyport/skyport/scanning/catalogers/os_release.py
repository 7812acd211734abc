"""``/etc/os-release`` and ``/usr/lib/os-release`` (os-release(5)): the image's distro. The
first wins when both exist (the scanner prefers it)."""

from __future__ import annotations

from skyport.scanning.catalogers import NOTHING, Cataloger, Found, text
from skyport.scanning.model import Distro

PATHS = ("etc/os-release", "usr/lib/os-release")


def parse(content: str) -> dict[str, str]:
    """KEY=VALUE lines, values optionally quoted (os-release(5): shell-compatible, no
    expansion); comments and malformed lines are ignored."""
    fields: dict[str, str] = {}
    for line in content.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        fields[key.strip()] = value
    return fields


def read(path: str, data: bytes, _nested_limit: int) -> Found:
    fields = parse(text(data))
    distro_id = fields.get("ID", "").strip().lower()
    if not distro_id:
        return NOTHING
    return Found(distro=Distro(distro_id, fields.get("VERSION_ID", ""), fields.get("PRETTY_NAME", "")))


CATALOGER = Cataloger("os-release", lambda path: path in PATHS, read)
