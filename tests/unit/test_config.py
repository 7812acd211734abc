"""Settings read from the environment: values the code cannot act on are refused at start."""

from __future__ import annotations

import pytest
from skyport.config import Settings

BASE = {"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t"}


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("", True), ("on", True),
                                                 ("off", False), ("OFF", False)])
def test_automatic_mount(value, expected):
    env = BASE if value is None else {**BASE, "SKYPORT_AUTOMATIC_MOUNT": value}
    assert Settings.from_env(env).automatic_mount is expected


def test_automatic_mount_refuses_anything_else():
    with pytest.raises(ValueError, match="SKYPORT_AUTOMATIC_MOUNT"):
        Settings.from_env({**BASE, "SKYPORT_AUTOMATIC_MOUNT": "0"})
