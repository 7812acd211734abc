"""template.yaml passes `sam validate --lint` and `sam build`, offline (no AWS account).

aws-sam-cli lives in its own venv (`make sam`, which `make test` depends on).
`sam build` needs the function's runtime, python3.12, which is looked for on PATH
(`make test` puts the one it finds first) and under pyenv. Without either, these
tests skip and say why, or under CI=true fail saying why (tests/machine.py).
"""

from __future__ import annotations

import os
import re
import subprocess

import botocore
from machine import cannot_run, runtime_python
from packaging.utils import canonicalize_name
from skyport_cli.stack import TEMPLATE_PATH, load_template

ROOT = TEMPLATE_PATH.parent
SAM = ROOT / ".venv-sam" / "bin" / "sam"


def _sam(*args: str, path_prefix: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    if not SAM.exists():
        cannot_run("aws-sam-cli is not installed: `make sam` installs it into .venv-sam")
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [str(SAM), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _pinned(requirements) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", requirements.read_text(), re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def _installed(target) -> dict[str, str]:
    """name -> version of what pip installed into a built package (its .dist-info)."""
    found = (path.name.removesuffix(".dist-info").rsplit("-", 1) for path in target.glob("*.dist-info"))
    return {canonicalize_name(name): version for name, version in found}


def test_sam_validate_lint():
    result = _sam("validate", "--lint", "--template", str(TEMPLATE_PATH))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_sam_build(tmp_path):
    runtime = load_template()["Resources"]["ApiFunction"]["Properties"]["Runtime"]
    version = runtime.removeprefix("python")
    python = runtime_python(version)
    if python is None:
        cannot_run(f"sam build needs python{version} (the function's runtime) on PATH or under pyenv")
    build = tmp_path / "build"
    result = _sam(
        "build",
        "--template",
        str(TEMPLATE_PATH),
        "--build-dir",
        str(build),
        "--cache-dir",
        str(ROOT / ".aws-sam" / "cache"),
        "--cached",
        path_prefix=str(python.parent),
    )
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
    assert all("aarch64" in p.name or "abi3" in p.name for p in build.rglob("*.so")), [
        p.name for p in build.rglob("*.so")
    ]
    function = build / "ApiFunction"
    assert (function / "skyport_api" / "handler.py").exists()
    # Exactly the pinned packages (requirements.txt, from requirements/lock.txt), so the
    # function ships the botocore these tests run with.
    for package, requirements in (
        (layer, ROOT / "layers" / "skyport" / "requirements.txt"),
        (function, ROOT / "functions" / "api" / "requirements.txt"),
    ):
        assert _installed(package) == _pinned(requirements), package
        assert _installed(package)["botocore"] == botocore.__version__
    assert not (function / "skyport").exists()
    assert not (function / "skyport_cli").exists() and not (layer / "skyport_cli").exists()
    # The events function (issue 11): its handler and exactly its pins (Powertools), no
    # botocore or core of its own: both come from the layer.
    events = build / "EventsFunction"
    assert (events / "skyport_events" / "__pycache__" / f"handler.{tag}.pyc").exists()
    assert _installed(events) == _pinned(ROOT / "functions" / "events" / "requirements.txt")
    assert "botocore" not in _installed(events) and not (events / "skyport").exists()
    # The replication and webhook functions (issue 11): the same shape, one package for both
    # (functions/hooks), each with its own entry point compiled.
    for name, entry in (("ReplicationFunction", "replication"), ("WebhookFunction", "webhooks")):
        hook = build / name
        assert (hook / "skyport_hooks" / "__pycache__" / f"{entry}.{tag}.pyc").exists(), name
        assert (hook / "skyport_hooks" / "__pycache__" / f"batch.{tag}.pyc").exists(), name
        assert _installed(hook) == _pinned(ROOT / "functions" / "hooks" / "requirements.txt"), name
        assert "botocore" not in _installed(hook) and not (hook / "skyport").exists(), name
    # The scan functions (issue 14): one package (functions/scan), an entry point each, and
    # exactly the scanning pins (CycloneDX, univers, ...), no botocore or core of their own.
    for name, entry in (("ScanFunction", "scan_on_push"), ("RescanFunction", "rescan")):
        scan = build / name
        assert (scan / "skyport_scan" / "__pycache__" / f"{entry}.{tag}.pyc").exists(), name
        assert _installed(scan) == _pinned(ROOT / "functions" / "scan" / "requirements.txt"), name
        assert "botocore" not in _installed(scan) and not (scan / "skyport").exists(), name
