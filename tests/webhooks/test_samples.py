"""events/webhooks: the request body each sample registry event (events/registry) is
delivered as, with a registry URL of https://registry.example.com. Checked current here;
rewritten with SKYPORT_WRITE_EVENT_SAMPLES=1."""

from __future__ import annotations

import json
import os

import pytest
from skyport.webhooks import envelope_event

from .conftest import REGISTRY_URL, ROOT, SAMPLES, sample_event

WEBHOOK_SAMPLES = ROOT / "events" / "webhooks"
WRITE_SAMPLES = os.environ.get("SKYPORT_WRITE_EVENT_SAMPLES") == "1"
# Distribution's instanceID names the running process: a fixed stand-in in the samples.
INSTANCE = "00000000-0000-4000-8000-000000000000"
NAMES = sorted(path.stem for path in SAMPLES.glob("*.json") if json.loads(path.read_text()))


@pytest.mark.parametrize("name", NAMES)
def test_webhook_samples_are_current(name: str):
    event = envelope_event(sample_event(name), REGISTRY_URL, now=0)
    event["source"]["instanceID"] = INSTANCE
    body = json.dumps({"events": [event]}, indent=2) + "\n"
    path = WEBHOOK_SAMPLES / f"{name}.json"
    if WRITE_SAMPLES:
        path.parent.mkdir(exist_ok=True)
        path.write_text(body)
    assert path.read_text() == body
