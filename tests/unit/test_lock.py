"""One lock pins every dependency: requirements/lock.txt (`make lock`).

The venv the tests run in is installed from it (Makefile), and the Lambda packages'
requirements.txt, which `sam build` installs (layers/skyport/Makefile,
functions/api/Makefile), are derived from it. These tests fail when the three drift
apart, so the function ships exactly the boto3 and botocore the tests ran with.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import botocore
import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"
# Lambda package -> the file that names what it ships (its roots).
LAMBDA = {
    ROOT / "layers" / "skyport" / "requirements.txt": ROOT / "requirements" / "layer.in",
    ROOT / "functions" / "api" / "requirements.txt": ROOT / "requirements" / "function.in",
    ROOT / "functions" / "events" / "requirements.txt": ROOT / "requirements" / "events-function.in",
    ROOT / "functions" / "hooks" / "requirements.txt": ROOT / "requirements" / "hooks-function.in",
    ROOT / "functions" / "scan" / "requirements.txt": ROOT / "requirements" / "scan-function.in",
}
# Every file derived from the lock for one platform: the Lambda packages', and the upload
# service image's (Dockerfile), which runs python3.12 on arm64 as the function does.
DERIVED = {
    **LAMBDA,
    ROOT / "requirements" / "upload-service.txt": ROOT / "requirements" / "upload-service.in",
}
# The function's runtime: template.yaml, python3.12 on arm64 (Amazon Linux).
LAMBDA_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)\s*(?:;(?P<marker>[^#]*))?")


def _lines(path: Path) -> list[str]:
    """Requirement lines without comments (uv's `# via` annotations included)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _pins(path: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker): every line must be an exact pin."""
    pins = {}
    for line in _lines(path):
        match = PIN.fullmatch(line)
        assert match, f"{path.relative_to(ROOT)}: not an exact pin: {line!r}"
        marker = (match["marker"] or "").strip() or None
        pins[canonicalize_name(match["name"])] = (match["version"], marker)
    return pins


def _roots(path: Path) -> list[Requirement]:
    return [Requirement(line) for line in _lines(path)]


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    return [Requirement(spec) for spec in specs]


def test_pyproject_dependencies_are_all_locked():
    lock = _pins(LOCK)
    for requirement in _pyproject_requirements():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is not in {LOCK.name}: run `make lock`"
        assert requirement.specifier.contains(lock[name][0], prereleases=True), (
            f"{name}=={lock[name][0]} does not satisfy pyproject's {requirement}: run `make lock`"
        )


def test_the_venv_is_the_lock():
    """What the tests run with is what the lock pins (the Makefile installs it with
    --no-deps): a venv installed some other way fails here, not on Lambda."""
    wrong = {}
    for name, (version, marker) in _pins(LOCK).items():
        if marker and not Marker(marker).evaluate():
            continue  # not for this platform (pywin32, ...)
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"(locked, installed): {wrong}; `make clean test` reinstalls from the lock"


@pytest.mark.parametrize("requirements", list(DERIVED), ids=lambda p: str(p.relative_to(ROOT)))
def test_lambda_requirements_are_the_locks_pins(requirements):
    lock = _pins(LOCK)
    pins = _pins(requirements)
    for name, (version, marker) in pins.items():
        assert marker is None, f"{name}: a marker in a file for one platform"
        assert name in lock and lock[name][0] == version, (
            f"{name}=={version} but the lock says {lock.get(name)}: run `make lock`"
        )


@pytest.mark.parametrize("requirements", list(DERIVED), ids=lambda p: str(p.relative_to(ROOT)))
def test_lambda_requirements_are_complete(requirements):
    """Every root and every dependency of a pinned package (with the extras asked for,
    on python3.12/arm64) is pinned in the same file: the Lambda Makefiles install
    them with --no-deps, so nothing unpinned can come in, and nothing may be missing.
    The dependencies are read from the venv's metadata, which is the lock's
    (test_the_venv_is_the_lock)."""
    pins = _pins(requirements)
    roots = _roots(DERIVED[requirements])
    shipped = {canonicalize_name(r.name) for r in _pyproject_requirements()}
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in roots]
    seen, missing = set(), []
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name not in pins:
            missing.append(name)
            continue
        for spec in importlib.metadata.requires(name) or []:
            dependency = Requirement(spec)
            if dependency.marker is None or any(
                dependency.marker.evaluate({**LAMBDA_ENV, "extra": extra}) for extra in extras or {""}
            ):
                todo.append((canonicalize_name(dependency.name), frozenset(dependency.extras)))
    assert not missing, f"{requirements.relative_to(ROOT)} lacks {sorted(set(missing))}: run `make lock`"
    unused = set(pins) - {name for name, _ in seen}
    assert not unused, f"{requirements.relative_to(ROOT)} pins what nothing needs: {sorted(unused)}"
    # What ships is what the tests install: each root is a dependency in pyproject.toml.
    assert {canonicalize_name(r.name) for r in roots} <= shipped


def test_the_function_ships_the_botocore_the_tests_run_with():
    # The events function ships none: it takes the layer's (functions/events/Makefile).
    pins = {path.parent.name: _pins(path) for path in LAMBDA}
    versions = {name: pinned["botocore"][0] for name, pinned in pins.items() if "botocore" in pinned}
    assert versions == {"skyport": botocore.__version__, "api": botocore.__version__}
