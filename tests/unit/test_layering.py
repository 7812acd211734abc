"""The core library knows nothing of web frameworks or Lambda (it is the Lambda layer,
and the same code must serve any front end)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import skyport

FORBIDDEN = {
    "fastapi",
    "starlette",
    "mangum",
    "uvicorn",
    "aws_lambda_powertools",
    "pydantic",
    "skyport_api",
    "skyport_cli",
    "moto",
}
CORE = Path(skyport.__file__).parent


def test_core_sources_import_no_framework():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(CORE)}: {name}" for name in names if name.split(".")[0] in FORBIDDEN
            ]
    assert offenders == []


def test_importing_every_core_module_loads_no_framework():
    modules = [m.name for m in pkgutil.walk_packages(skyport.__path__, "skyport.")]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {FORBIDDEN!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_importing_the_core_creates_no_aws_client():
    # boto3 clients are created lazily on first use, never at import.
    script = "import skyport.registry, sys; print('boto3' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
