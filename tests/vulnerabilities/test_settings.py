"""The vulnerability data's settings (issue 14), refused at start when wrong."""

from __future__ import annotations

import pytest
from skyport.config import Settings

BASE = {"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t"}


def test_defaults_mirror_the_shipped_data_and_the_issues_ecosystems() -> None:
    settings = Settings.from_env(BASE)
    assert settings.osv_source == ""  # the shipped data set: never the network unless told
    assert settings.osv_ecosystems == ("Debian", "Ubuntu", "Alpine", "PyPI", "npm", "Maven", "Go")
    assert settings.osv_refresh_seconds == 300


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "SKYPORT_OSV_SOURCE": "https://osv-vulnerabilities.storage.googleapis.com",
            "SKYPORT_OSV_ECOSYSTEMS": "Debian, PyPI ,Go",
            "SKYPORT_OSV_REFRESH_SECONDS": "60",
        }
    )
    assert settings.osv_source == "https://osv-vulnerabilities.storage.googleapis.com"
    assert settings.osv_ecosystems == ("Debian", "PyPI", "Go")
    assert settings.osv_refresh_seconds == 60


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SKYPORT_OSV_SOURCE", "ftp://example.com/osv"),
        ("SKYPORT_OSV_ECOSYSTEMS", "Debian,../../etc"),
        ("SKYPORT_OSV_ECOSYSTEMS", ","),
        ("SKYPORT_OSV_REFRESH_SECONDS", "-1"),
        ("SKYPORT_OSV_REFRESH_SECONDS", "٣٠"),  # Unicode digits
        ("SKYPORT_OSV_REFRESH_SECONDS", "86401"),
    ],
)
def test_bad_values_are_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({**BASE, name: value})
