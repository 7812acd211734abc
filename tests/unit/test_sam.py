"""template.yaml passes `sam validate --lint` and `sam build`, offline (no AWS account).

aws-sam-cli lives in its own venv (`make sam`, which `make test` depends on);
without it these tests skip and say so. `sam build` needs the function's runtime,
python3.12, which is looked for on PATH and under pyenv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from skyport_cli.stack import TEMPLATE_PATH, load_template

ROOT = TEMPLATE_PATH.parent
SAM = ROOT / ".venv-sam" / "bin" / "sam"


def _runtime_python_dir(version: str) -> str | None:
    """A directory holding a working pythonX.Y for the function's runtime."""
    candidates = []
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False) \
        if shutil.which("pyenv") else None
    if root and root.returncode == 0:
        candidates += sorted(Path(root.stdout.strip(), "versions").glob(f"{version}*/bin/python{version}"))
    found = shutil.which(f"python{version}")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        # A pyenv shim exists for every installed version but may refuse to run.
        if subprocess.run([str(candidate), "-c", ""], capture_output=True, check=False).returncode == 0:
            return str(candidate.parent)
    return None


def _sam(*args: str, path_prefix: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    if not SAM.exists():
        pytest.skip("aws-sam-cli is not installed: `make sam` installs it into .venv-sam")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1"}
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    return subprocess.run([str(SAM), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_sam_validate_lint():
    result = _sam("validate", "--lint", "--template", str(TEMPLATE_PATH))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_sam_build(tmp_path):
    runtime = load_template()["Resources"]["ApiFunction"]["Properties"]["Runtime"]
    version = runtime.removeprefix("python")
    python_dir = _runtime_python_dir(version)
    if python_dir is None:
        pytest.skip(f"sam build needs python{version} (the function's runtime) on PATH or under pyenv")
    build = tmp_path / "build"
    result = _sam("build", "--template", str(TEMPLATE_PATH), "--build-dir", str(build),
                  "--cache-dir", str(ROOT / ".aws-sam" / "cache"), "--cached", path_prefix=python_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Build Succeeded" in result.stdout + result.stderr
    # The layer holds the core and its dependencies, built for arm64; the
    # function holds the API package and never the core (it comes from the layer).
    layer = build / "CoreLayer" / "python"
    assert (layer / "skyport" / "registry.py").exists() and (layer / "boto3").is_dir()
    # Compiled for the runtime's Python: /var/task and /opt are read-only in Lambda.
    tag = f"cpython-{version.replace('.', '')}"
    assert (layer / "skyport" / "__pycache__" / f"registry.{tag}.pyc").exists()
    assert (build / "ApiFunction" / "fastapi" / "__pycache__" / f"applications.{tag}.pyc").exists()
    assert list(layer.glob("rehashes/*.so")), "rehashes' native module"
    assert all("aarch64" in p.name or "abi3" in p.name for p in build.rglob("*.so")), \
        [p.name for p in build.rglob("*.so")]
    function = build / "ApiFunction"
    assert (function / "skyport_api" / "handler.py").exists()
    assert not (function / "skyport").exists()
    assert not (function / "skyport_cli").exists() and not (layer / "skyport_cli").exists()
