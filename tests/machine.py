"""What the real-client and SAM tests need from the machine, and what happens without it.

A test that cannot run here (a container client missing, dockerd or podman unable to
start, no network bridge, aws-sam-cli or python3.12 missing) calls
``cannot_run(reason)``, the one place that decides: outside CI it skips with the
reason (pytest's ``-ra``, set in pyproject.toml, prints it); under ``CI=true`` it
fails with the reason, so a CI run that did not exercise them cannot pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

RUNTIME_PYTHON_ENV = "SKYPORT_RUNTIME_PYTHON"


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def cannot_run(reason: str) -> NoReturn:
    """Skip (outside CI) or fail (CI=true) the current test, saying why."""
    __tracebackhide__ = True
    if under_ci():
        pytest.fail(f"CI=true and this test cannot run here: {reason}", pytrace=False)
    pytest.skip(reason)


def runtime_python(version: str) -> Path | None:
    """A working pythonX.Y (the function's runtime, for `sam build`): the one `make test`
    found (SKYPORT_RUNTIME_PYTHON), else on PATH or under pyenv. Debian 12 packages no
    python3.12, and PyPI has no interpreter that installs without a download from
    elsewhere."""
    candidates = [
        Path(p) for p in (os.environ.get(RUNTIME_PYTHON_ENV), shutil.which(f"python{version}")) if p
    ]
    if shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        if root.returncode == 0:
            candidates += sorted(
                Path(root.stdout.strip(), "versions").glob(f"{version}*/bin/python{version}")
            )
    check = "import sys; print('%d.%d' % sys.version_info[:2])"
    for candidate in candidates:
        # A pyenv shim exists for every installed version but may refuse to run.
        result = subprocess.run([str(candidate), "-c", check], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip() == version:
            return candidate
    return None
