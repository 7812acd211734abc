"""The Lambda handler module, imported as Lambda's init phase would: with the function's
environment set while it builds its settings, registry and app."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def import_handler(environment: dict[str, str], module: str = "skyport_api.handler") -> ModuleType:
    """``module`` (the API function's handler unless told), imported afresh with
    ``environment`` set, which is restored afterwards."""
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        # Reloaded: built from this environment, whatever imported it before.
        return importlib.reload(importlib.import_module(module))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
