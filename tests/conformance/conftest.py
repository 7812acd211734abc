"""Each conformance mode's summary line, shown again at the end of the pytest run
(a passing test's own output is captured and would not be seen)."""

from __future__ import annotations

import pytest

_SUMMARIES = pytest.StashKey[dict[str, str]]()


@pytest.fixture
def conformance_summaries(request: pytest.FixtureRequest) -> dict[str, str]:
    return request.config.stash.setdefault(_SUMMARIES, {})


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    summaries = config.stash.get(_SUMMARIES, {})
    if summaries:
        terminalreporter.section("OCI conformance suite")
        for mode, line in summaries.items():
            terminalreporter.write_line(f"{mode}: {line}")
