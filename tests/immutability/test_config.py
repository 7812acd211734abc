"""SKYPORT_IMMUTABILITY_CACHE_SECONDS: how stale a rule change may be in one process."""

from __future__ import annotations

import pytest
from skyport.config import Settings

BASE = {"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t"}


@pytest.mark.parametrize(("value", "expected"), [(None, 30), ("", 30), ("0", 0), ("5", 5), ("3600", 3600)])
def test_cache_seconds(value, expected):
    env = BASE if value is None else {**BASE, "SKYPORT_IMMUTABILITY_CACHE_SECONDS": value}
    assert Settings.from_env(env).immutability_cache_seconds == expected


@pytest.mark.parametrize("value", ["-1", "3601", "1e9", "\u0661", "thirty"])
def test_bad_cache_seconds_refused_at_start(value):
    with pytest.raises(ValueError):
        Settings.from_env({**BASE, "SKYPORT_IMMUTABILITY_CACHE_SECONDS": value})
