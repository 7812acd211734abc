"""tests/machine.py: a test that cannot run here skips with the reason, or fails with
it under CI=true. Checked on a pytest run of its own (pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

NEEDY = """
from machine import cannot_run

def test_needs_a_client():
    cannot_run("frobctl not installed: scripts/install-system-deps.sh installs it")
"""


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_skips_with_the_reason_outside_ci(pytester, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile(NEEDY)
    result = pytester.runpytest("-ra")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*frobctl not installed: scripts/install-system-deps.sh*"])


@pytest.mark.parametrize("ci", ["true", "1"])
def test_fails_with_the_reason_under_ci(pytester, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(NEEDY)
    result = pytester.runpytest("-ra")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CI=true and this test cannot run here: frobctl not installed*"])
