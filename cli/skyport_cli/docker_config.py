"""Credentials for `skyport push` and `skyport pull` from docker's config.json
(``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``, ``auths.<host>.auth``, the
base64 of ``user:password``). The CLI's concern, not the core's: the core's
distribution client (skyport.distribution_client) is given credentials, it never
looks for them."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path


def docker_credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for ``host`` from docker's config.json, if it has them."""
    folder = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in (host, f"https://{host}", f"http://{host}"):
        entry = auths.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return (user, password) if user else None
    return None
