"""WebhookDispatcher.deliver against real HTTP receivers, with subscriptions in the table
and secrets in Secrets Manager (moto): the envelope, its signature checked by the README's
code, filters, failures (down, 5xx, slow, redirect) and redelivery."""

from __future__ import annotations

import json
import time

import pytest
from skyport.events import EVENT_TYPES, is_registry_item, registry_events
from skyport.registry import Registry
from skyport.storage import keys
from skyport.webhooks import (
    DELIVERY_RECORD_SECONDS,
    ENVELOPE_MEDIA_TYPE,
    WebhookDeliveryFailed,
    WebhookDispatcher,
    envelope_event,
)

from .conftest import REGISTRY_URL, readme_verifier, sample_event, webhook_admin

SECRET = "a-receivers-secret-0123456789"
SAMPLES = {
    "manifest.pushed": "01-manifest-pushed",
    "repository.created": "02-repository-created",
    "tag.created": "03-tag-created",
    "tag.moved": "04-tag-moved",
    "tag.deleted": "06-tag-deleted",
    "manifest.deleted": "07-manifest-deleted",
}


def items(registry: Registry) -> list[dict]:
    client, table = registry.clients.dynamodb, registry.settings.table
    return [item for page in client.get_paginator("scan").paginate(TableName=table) for item in page["Items"]]


def delivery_records(registry: Registry) -> list[dict]:
    return [i for i in items(registry) if i[keys.PK]["S"].startswith(keys.WEBHOOK_DELIVERY_PREFIX)]


def test_a_subscriber_gets_the_envelope_signed_as_the_readme_checks_it(hook_registry, receivers):
    receiver = receivers()
    webhook, generated = webhook_admin(hook_registry).add(receiver.url, secret=SECRET)
    assert generated is None
    event = sample_event("04-tag-moved")
    before = time.time()

    WebhookDispatcher(hook_registry).deliver(event)

    [request] = receiver.requests
    assert request.path == "/hooks/skyport?team=a"
    headers = request.headers
    assert headers["content-type"] == ENVELOPE_MEDIA_TYPE
    assert headers["skyport-event-id"] == event.id
    assert headers["skyport-event-type"] == "tag.moved"
    assert headers["skyport-webhook-id"] == webhook.id
    verify = readme_verifier()
    signature = headers["skyport-signature"]
    assert verify(SECRET, signature, request.body)
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    assert before - 1 <= timestamp <= time.time() + 1
    # Anything else fails the check: another secret, a changed body, a replay 6 minutes on.
    assert not verify("another-secret-0123456789", signature, request.body)
    assert not verify(SECRET, signature, request.body.replace(b"latest", b"stable"))
    assert not verify(SECRET, signature, request.body, now=timestamp + 360)
    assert verify(SECRET, signature, request.body, now=timestamp + 240)
    for forged in ("", "t=1", "v1=00", "t=x,v1=00", "t=١٢٣,v1=٠٠", f"t={timestamp},v1=é"):
        assert not verify(SECRET, forged, request.body)

    assert json.loads(request.body) == {
        "events": [
            {
                "id": event.id,
                "timestamp": event.time,
                "action": "push",
                "target": {
                    "repository": "samples/app",
                    "tag": "latest",
                    "digest": event.digest,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": 417,
                    "length": 417,
                    "url": f"{REGISTRY_URL}/v2/samples/app/manifests/{event.digest}",
                },
                "request": {},
                "actor": {},
                "source": {
                    "addr": "registry.example.com",
                    "instanceID": json.loads(request.body)["events"][0]["source"]["instanceID"],
                },
                "skyport": {
                    "eventType": "tag.moved",
                    "orderingKey": "samples/app:latest",
                    "sequenceNumber": event.sequence_number,
                    "previousDigest": event.previous_digest,
                },
            }
        ]
    }


@pytest.mark.parametrize(
    ("event_type", "action", "target"),
    [
        ("manifest.pushed", "push", {"repository", "digest", "mediaType", "size", "length", "url", "tag"}),
        ("tag.created", "push", {"repository", "tag", "digest", "mediaType", "size", "length", "url"}),
        ("tag.moved", "push", {"repository", "tag", "digest", "mediaType", "size", "length", "url"}),
        ("repository.created", "push", {"repository"}),
        # Distribution's deletes: a tag's names repository and tag, a manifest's its digest.
        ("tag.deleted", "delete", {"repository", "tag"}),
        ("manifest.deleted", "delete", {"repository", "digest"}),
    ],
)
def test_each_event_type_maps_to_distributions_action_and_target(event_type, action, target):
    event = sample_event(SAMPLES[event_type])
    assert event.type == event_type
    envelope = envelope_event(event, REGISTRY_URL, now=0)
    assert envelope["action"] == action and set(envelope["target"]) == target
    assert envelope["skyport"]["eventType"] == event_type and envelope["id"] == event.id
    if event_type == "tag.deleted":
        assert envelope["skyport"]["previousDigest"] == event.previous_digest
    # Without a public registry URL, no url; a record without a time gets the delivery's.
    bare = envelope_event(replace_time(event), None, now=0)
    assert "url" not in bare["target"] and "addr" not in bare["source"]
    assert bare["timestamp"] == "1970-01-01T00:00:00Z"


def replace_time(event):
    from dataclasses import replace

    return replace(event, time="")


def test_every_event_type_has_an_action_and_a_later_deletion_type_is_a_delete():
    for event_type in EVENT_TYPES:
        event = sample_event("02-repository-created", type=event_type)
        assert envelope_event(event, None, now=0)["action"] in ("push", "delete")
    expired = sample_event("07-manifest-deleted", type="manifest.lifecycle.deleted")
    assert envelope_event(expired, None, now=0)["action"] == "delete"


def test_event_type_and_repository_filters(hook_registry, receivers):
    admin = webhook_admin(hook_registry)
    team_a_tags, pushes, everything = receivers(), receivers(), receivers()
    admin.add(team_a_tags.url, event_types=["tag.*"], repositories="team-a/*", secret=SECRET)
    admin.add(pushes.url, event_types=["manifest.pushed,repository.created"], secret=SECRET)
    admin.add(everything.url, secret=SECRET)
    dispatcher = WebhookDispatcher(hook_registry)

    cases = [
        (sample_event("04-tag-moved", repository="team-a/app", id="e1"), {"team_a_tags", "everything"}),
        (sample_event("04-tag-moved", repository="team-b/app", id="e2"), {"everything"}),
        (sample_event("04-tag-moved", repository="team-a", id="e3"), {"everything"}),  # not under team-a/
        (sample_event("01-manifest-pushed", repository="team-a/app", id="e4"), {"pushes", "everything"}),
        (sample_event("06-tag-deleted", repository="team-a/x/y", id="e5"), {"team_a_tags", "everything"}),
        (sample_event("07-manifest-deleted", id="e6"), {"everything"}),
    ]
    named = {"team_a_tags": team_a_tags, "pushes": pushes, "everything": everything}
    for event, expected in cases:
        counts = {name: len(receiver.requests) for name, receiver in named.items()}
        dispatcher.deliver(event)
        got = {name for name, receiver in named.items() if len(receiver.requests) > counts[name]}
        assert got == expected, event.id
        for name in got:
            assert named[name].requests[-1].headers["skyport-event-id"] == event.id


@pytest.mark.parametrize("fault", ["down", "5xx", "slow", "redirect"])
def test_a_failing_receiver_fails_the_delivery_with_the_reason_and_nothing_is_recorded(
    hook_registry, receivers, closed_port_url, fault
):
    if fault == "down":
        url = closed_port_url
    else:
        receiver = receivers(
            status={"5xx": 503, "slow": 200, "redirect": 302}[fault],
            delay=2.0 if fault == "slow" else 0.0,
            location="http://127.0.0.1:1/elsewhere" if fault == "redirect" else "",
        )
        url = receiver.url
    webhook, secret = webhook_admin(hook_registry).add(url)
    dispatcher = WebhookDispatcher(hook_registry, connect_timeout=1.0, read_timeout=0.5)
    started = time.monotonic()

    with pytest.raises(WebhookDeliveryFailed) as failed:
        dispatcher.deliver(sample_event("03-tag-created"))

    assert time.monotonic() - started < 1.9  # the slow receiver was not waited for
    reason = failed.value.reason
    expected = {
        "down": "connection refused",
        "5xx": "HTTP 503",
        "slow": "no answer within",
        "redirect": "HTTP 302 (redirects are not followed)",
    }[fault]
    assert webhook.id in reason and expected in reason, reason
    assert [f.webhook_id for f in failed.value.failures] == [webhook.id]
    # The receiver is named by scheme://host:port: never the secret, nor the URL's path or query.
    assert secret not in reason and "/hooks" not in reason and "team=a" not in reason
    assert delivery_records(hook_registry) == []


def test_a_retry_skips_the_receivers_that_acknowledged_the_event(hook_registry, receivers):
    good, flaky = receivers(), receivers(status=500)
    admin = webhook_admin(hook_registry)
    good_hook, _ = admin.add(good.url, secret=SECRET)
    flaky_hook, _ = admin.add(flaky.url, secret=SECRET)
    dispatcher = WebhookDispatcher(hook_registry)
    event = sample_event("04-tag-moved")

    with pytest.raises(WebhookDeliveryFailed) as failed:
        dispatcher.deliver(event)
    assert flaky_hook.id in failed.value.reason and good_hook.id not in failed.value.reason
    assert "1 of 2 webhooks failed" in failed.value.reason
    [record] = delivery_records(hook_registry)
    assert record[keys.SK]["S"] == good_hook.id and record["status"]["N"] == "200"
    expires = int(record[keys.TTL_ATTRIBUTE]["N"])
    assert abs(expires - (time.time() + DELIVERY_RECORD_SECONDS)) < 60

    flaky.status = 204  # the receiver is back; the queue delivers the event again
    WebhookDispatcher(hook_registry).deliver(event)  # a new process, as a new Lambda instance
    assert (len(good.requests), len(flaky.requests)) == (1, 2)
    assert good.requests[0].headers["skyport-event-id"] == flaky.requests[1].headers["skyport-event-id"]

    dispatcher.deliver(event)  # everyone has it: nothing is sent
    assert (len(good.requests), len(flaky.requests)) == (1, 2)
    # Another event is news to both.
    dispatcher.deliver(sample_event("04-tag-moved", id="another-0"))
    assert (len(good.requests), len(flaky.requests)) == (2, 3)


def test_a_webhook_whose_secret_is_gone_fails_without_sending(hook_registry, receivers):
    receiver = receivers()
    webhook, _ = webhook_admin(hook_registry).add(receiver.url)
    name = f"{hook_registry.settings.hook_secrets}webhooks/{webhook.id}"
    hook_registry.clients.secretsmanager.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    with pytest.raises(WebhookDeliveryFailed, match="signing secret unavailable"):
        WebhookDispatcher(hook_registry).deliver(sample_event("01-manifest-pushed"))
    assert receiver.requests == []


def test_without_subscribers_nothing_is_sent_or_written(hook_registry):
    WebhookDispatcher(hook_registry).deliver(sample_event("01-manifest-pushed"))
    assert items(hook_registry) == []


def test_secrets_live_in_secrets_manager_only_and_webhook_items_are_no_registry_content(
    hook_registry, receivers
):
    receiver = receivers()
    webhook, secret = webhook_admin(hook_registry).add(receiver.url, event_types=["tag.*"])
    assert secret and len(secret) >= 40
    WebhookDispatcher(hook_registry).deliver(sample_event("03-tag-created"))
    stored = items(hook_registry)
    assert {item[keys.PK]["S"] for item in stored} == {
        keys.WEBHOOK,
        keys.webhook_deliveries_partition(sample_event("03-tag-created").id),
    }
    assert secret not in json.dumps(stored)
    value = hook_registry.clients.secretsmanager.get_secret_value(
        SecretId=f"skyport/{hook_registry.settings.table}/hooks/webhooks/{webhook.id}"
    )
    assert value["SecretString"] == secret
    # Neither kind of item is registry content: the events function never hears of them.
    for item in stored:
        record_keys = {keys.PK: item[keys.PK], keys.SK: item[keys.SK]}
        assert not is_registry_item(record_keys)
        for name in ("INSERT", "MODIFY", "REMOVE"):
            record = {"eventID": "x", "eventName": name, "dynamodb": {"Keys": record_keys, "NewImage": item}}
            assert registry_events(record) == []


def test_a_stored_url_that_is_not_http_is_refused_at_delivery_too(hook_registry):
    # Someone wrote the table by hand: the delivery checks the URL again and fails, naming it.
    from skyport.storage.dynamodb.webhooks import DynamoWebhookStore

    store = DynamoWebhookStore(hook_registry.clients.dynamodb, hook_registry.settings.table)
    fields = {"id": "wh-by-hand", "url": "file:///etc/passwd", "event_types": [], "repositories": "*"}
    assert store.create_webhook({**fields, "insecure": False, "created_at": 0})
    assert not store.create_webhook({**fields, "insecure": False, "created_at": 0})  # WEBHOOK_IS_NEW
    hook_registry.clients.secretsmanager.create_secret(
        Name=f"{hook_registry.settings.hook_secrets}webhooks/wh-by-hand", SecretString=SECRET
    )
    with pytest.raises(WebhookDeliveryFailed, match=r"wh-by-hand \(file://\): URL refused"):
        WebhookDispatcher(hook_registry).deliver(sample_event("01-manifest-pushed"))
    assert delivery_records(hook_registry) == []


def test_building_a_dispatcher_creates_no_aws_client():
    # The webhook function may build it in its init phase: clients come on first delivery.
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from skyport.config import Settings\n"
        "from skyport.registry import Registry\n"
        "from skyport.webhooks import WebhookAdmin, WebhookDispatcher\n"
        "registry = Registry(Settings(bucket='b', table='t'))\n"
        "WebhookDispatcher(registry), WebhookAdmin(registry, secret_writer=None)\n"
        "print('boto3' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_https_receivers_are_verified_unless_added_insecure(hook_registry, receivers, self_signed):
    own_ca = receivers(certificate=self_signed)
    admin = webhook_admin(hook_registry)
    checked, _ = admin.add(own_ca.url, secret=SECRET, repositories="checked/*")
    admin.add(own_ca.url, secret=SECRET, repositories="unchecked/*", insecure=True)
    dispatcher = WebhookDispatcher(hook_registry)

    with pytest.raises(WebhookDeliveryFailed, match=rf"{checked.id} \(https://127\.0\.0\.1:\d+\): TLS: "):
        dispatcher.deliver(sample_event("03-tag-created", repository="checked/app"))
    assert own_ca.requests == []
    dispatcher.deliver(sample_event("03-tag-created", repository="unchecked/app"))
    [request] = own_ca.requests
    assert readme_verifier()(SECRET, request.headers["skyport-signature"], request.body)


def test_a_removed_webhook_gets_nothing_more(hook_registry, receivers):
    receiver = receivers()
    admin = webhook_admin(hook_registry)
    webhook, _ = admin.add(receiver.url, secret=SECRET)
    dispatcher = WebhookDispatcher(hook_registry)
    dispatcher.deliver(sample_event("03-tag-created"))
    admin.remove(webhook.id)
    assert admin.list_webhooks() == []
    dispatcher.deliver(sample_event("04-tag-moved"))  # the same process: its secret was cached
    assert [r.headers["skyport-event-type"] for r in receiver.requests] == ["tag.created"]
