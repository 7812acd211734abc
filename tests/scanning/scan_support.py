"""The scan on push as deployed, driven in process for the scan tests: images pushed over
HTTP, the table's stream turned into registry events (skyport.events), each event the
ScanRule of template.yaml lets through delivered as a Lambda SQS event (the EventBridge
event JSON as its body) to the ScanFunction handler, imported as Lambda's init phase would
with the function's environment. The OSV data the tests ship is mirrored into the test
bucket by the same code the mirror function runs."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable

from handler_module import import_handler
from hook_queues import REGION, bus_to_queue
from moto.events.models import EventPattern
from oci import OCI_CONFIG, OCI_MANIFEST, descriptor, push_blob
from skyport.event_bus import DETAIL_TYPES, SOURCE, detail
from skyport.events import RegistryEvent, registry_events
from skyport.registry import Registry
from skyport.storage.s3 import S3ObjectStore
from skyport.vulnerabilities.mirror import DEFAULT_ECOSYSTEMS, mirror, shipped_data
from skyport_cli.gateway import LambdaContext
from skyport_cli.pipeline import lambda_sqs_record
from skyport_cli.stack import load_template
from stream_reader import stream_records

from scanning.images import Image


def image_config(image: Image) -> bytes:
    return json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()


def image_manifest(image: Image, config: bytes) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [
            {"mediaType": layer.media_type, "digest": layer.digest, "size": len(layer.data)}
            for layer in image.layers
        ],
    }
    return json.dumps(document).encode()


def push_scan_image(client, repository: str, image: Image, reference: str | None = None) -> str:
    """Push one of scanning/images.py's images (its layers, a config, the manifest) over
    the API; its manifest digest."""
    config = image_config(image)
    for blob in (config, *(layer.data for layer in image.layers)):
        push_blob(client, repository, blob, mode="post")
    manifest = image_manifest(image, config)
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    response = client.put(
        f"/v2/{repository}/manifests/{reference or digest}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return digest


def mirror_sample_osv(registry: Registry) -> None:
    """The shipped OSV data into the registry's bucket, by the mirror function's code."""
    store = S3ObjectStore(registry.clients.s3, registry.settings.bucket)
    result = mirror(str(shipped_data()), store, DEFAULT_ECOSYSTEMS)
    assert result.failed == {}, result.failed


class ScanPipeline:
    """manifest.pushed events from the stream to the ScanFunction handler, as deployed."""

    def __init__(self, registry: Registry, moto_endpoint: str, monkeypatch) -> None:
        for service in ("SQS", "EVENTBRIDGE"):
            monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", moto_endpoint)
        self.registry = registry
        self.queues = bus_to_queue(moto_endpoint)
        resources = load_template()["Resources"]
        rule = resources["ScanRule"]["Properties"]["EventPattern"]
        self._rule = EventPattern(json.dumps(rule), rule)
        module, _, name = resources["ScanFunction"]["Properties"]["Handler"].rpartition(".")
        settings = registry.settings
        self.handler = getattr(
            import_handler(
                {
                    "SKYPORT_BUCKET": settings.bucket,
                    "SKYPORT_TABLE": settings.table,
                    "SKYPORT_S3_ENDPOINT": settings.s3_endpoint or "",
                    "SKYPORT_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
                    "SKYPORT_DEAD_LETTER_QUEUE_URL": self.queues["dead"],
                    "SKYPORT_HOOK_MAX_ATTEMPTS": "2",
                    "SKYPORT_HOOK_BACKOFF_SECONDS": "1",
                    "POWERTOOLS_SERVICE_NAME": "skyport-scan",
                },
                module,
            ),
            name,
        )
        self._seen: set[str] = set()
        self.events: list[RegistryEvent] = []  # every registry event the stream held so far
        self.delivered: list[RegistryEvent] = []  # those the scan rule sent to the function
        self.responses: list[dict] = []

    def envelope(self, event: RegistryEvent) -> dict:
        """The EventBridge event the bus makes of a registry event (event_bus.entry)."""
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": DETAIL_TYPES[event.type],
            "source": SOURCE,
            "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": REGION,
            "resources": [],
            "detail": detail(event),
        }

    def new_events(self) -> list[RegistryEvent]:
        fresh = []
        for record in stream_records(self.registry):
            number = record["dynamodb"]["SequenceNumber"]
            if number in self._seen:
                continue
            self._seen.add(number)
            fresh.extend(registry_events(record))
        self.events.extend(fresh)
        return fresh

    def deliver(self, events: Iterable[RegistryEvent]) -> None:
        for event in events:
            body = self.envelope(event)
            if not self._rule.matches_event(body):
                continue
            self.delivered.append(event)
            message = {
                "MessageId": str(uuid.uuid4()),
                "ReceiptHandle": uuid.uuid4().hex,
                "Body": json.dumps(body),
                "Attributes": {"ApproximateReceiveCount": "1"},
            }
            record = lambda_sqs_record(message, self.queues["arn"], REGION)
            context = LambdaContext(function_name="skyport-scan", deadline=time.monotonic() + 900)
            self.responses.append(self.handler({"Records": [record]}, context))

    def run(self, rounds: int = 5) -> list[RegistryEvent]:
        """Deliver what the stream holds until it holds nothing new for the scan rule (our
        own artifact pushes come back and are filtered); the events that appeared."""
        start = len(self.events)
        for _ in range(rounds):
            fresh = self.new_events()
            if not fresh:
                break
            self.deliver(fresh)
        return self.events[start:]

    def of_type(self, kind: str, since: int = 0) -> list[RegistryEvent]:
        return [event for event in self.events[since:] if event.type == kind]
