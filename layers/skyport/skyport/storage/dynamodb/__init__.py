"""The DynamoDB adapters of the storage ports, one module per concept, on one table:

- ``table.py``: the table wrapper, attribute marshalling, the conditional-write helper;
- ``blobs.py``: BlobIndex; ``uploads.py``: UploadSessions;
- ``manifests.py``: ManifestIndex (manifests, tags, referrers, catalog);
- ``identities.py``: AuthStore (identities, grants, signing keys).

The adapters are also importable from here, each loaded on first use (an auth-off
function never imports ``identities``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_ADAPTERS = {
    "DynamoBlobIndex": "blobs",
    "DynamoUploadSessions": "uploads",
    "DynamoManifestIndex": "manifests",
    "DynamoAuthStore": "identities",
}
__all__ = list(_ADAPTERS)


def __getattr__(name: str) -> Any:
    if name not in _ADAPTERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_ADAPTERS[name]}", __name__), name)
