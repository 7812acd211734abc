"""Settings read from the environment: values the code cannot act on are refused at start."""

from __future__ import annotations

import pytest
from skyport.config import Settings

BASE = {"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t"}


@pytest.mark.parametrize(
    ("value", "expected"), [(None, True), ("", True), ("on", True), ("off", False), ("OFF", False)]
)
def test_automatic_mount(value, expected):
    env = BASE if value is None else {**BASE, "SKYPORT_AUTOMATIC_MOUNT": value}
    assert Settings.from_env(env).automatic_mount is expected


def test_automatic_mount_refuses_anything_else():
    with pytest.raises(ValueError, match="SKYPORT_AUTOMATIC_MOUNT"):
        Settings.from_env({**BASE, "SKYPORT_AUTOMATIC_MOUNT": "0"})


@pytest.mark.parametrize(("value", "expected"), [(None, 1000), ("", 1000), ("0", 0), ("25", 25)])
def test_max_open_uploads(value, expected):
    env = BASE if value is None else {**BASE, "SKYPORT_MAX_OPEN_UPLOADS": value}
    assert Settings.from_env(env).max_open_uploads == expected


@pytest.mark.parametrize("value", ["-1", "many"])
def test_max_open_uploads_refuses_anything_else(value):
    with pytest.raises(ValueError):
        Settings.from_env({**BASE, "SKYPORT_MAX_OPEN_UPLOADS": value})
