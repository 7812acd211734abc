"""scripts/install-system-deps.sh exits non-zero, saying why, when an install fails;
where it cannot install it exits 0 (the tests then skip) except under CI=true.

Run with a PATH of stand-ins: an `apt-get` that fails or installs nothing, an `id`
that says root or not; none of the container clients is on that PATH.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-system-deps.sh"
BASH = "/bin/bash"


def _run(tmp_path: Path, *, uid: int, apt_get: str | None, ci: str | None = None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!{BASH}\necho {uid}\n")
    if apt_get is not None:
        (bin_dir / "apt-get").write_text(f"#!{BASH}\n{apt_get}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {"PATH": str(bin_dir)} | ({"CI": ci} if ci is not None else {})
    return subprocess.run(
        [BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_failed_install_fails(tmp_path):
    result = _run(tmp_path, uid=0, apt_get='echo "E: Unable to locate package skopeo" >&2; exit 100')
    assert result.returncode != 0
    assert "could not install skopeo podman docker.io uidmap docker-registry iproute2" in result.stderr


def test_an_install_that_brings_no_command_fails(tmp_path):
    result = _run(tmp_path, uid=0, apt_get="exit 0")
    assert result.returncode != 0
    assert "still not on PATH" in result.stderr and "skopeo" in result.stderr


@pytest.mark.parametrize(("ci", "returncode"), [(None, 0), ("true", 1)])
def test_cannot_install_skips_outside_ci_fails_under_it(tmp_path, ci, returncode):
    result = _run(tmp_path, uid=1000, apt_get=None, ci=ci)
    assert result.returncode == returncode, result.stderr
    assert "missing skopeo podman" in result.stderr
