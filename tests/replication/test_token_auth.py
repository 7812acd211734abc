"""Replication to a Skyport with token auth on (the Docker token flow: a 401 Bearer
challenge, a token for the repository from its realm, with the rule's credentials from
Secrets Manager); wrong credentials fail with the reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from direct.running import Served, serve
from oci import make_image, push_image
from skyport.registry import Registry
from skyport.replication import ReplicationFailed

from .conftest import new_stack, replicate_all

PASSWORD = "dest-" + uuid.uuid4().hex


@pytest.fixture
def guarded(moto_endpoint, aws_clients, template) -> Iterator[Served]:
    settings = replace(
        new_stack(moto_endpoint, aws_clients, template, "auth"), auth="on", signing_key_in_memory=True
    )
    registry = Registry(settings, clients=aws_clients)
    registry.identities.add_user("mirror", PASSWORD)
    registry.identities.grant("team/*", "mirror", ["push", "delete"])
    with serve(registry) as running:
        yield running


def test_the_token_flow_with_the_rules_credentials(rules, replicator, feed, source_client, guarded):
    rules.add("team/*", guarded.url, username="mirror", password=PASSWORD, deletes=True)
    image = make_image()
    push_image(source_client, "team/app", image, "1")
    replicate_all(replicator, feed.new())
    assert guarded.registry.manifests.resolve("team/app", "1").digest == image.digest
    assert source_client.delete("/v2/team/app/manifests/1").status_code == 202
    replicate_all(replicator, feed.new())
    assert not [t for t in guarded.registry.tags.list("team/app", 100, None).items]


def test_wrong_credentials_or_none_fail_with_the_reason(rules, replicator, feed, source_client, guarded):
    wrong = rules.add("team/*", guarded.url, username="mirror", password="not-it")
    anonymous = rules.add("team/*", guarded.url)
    push_image(source_client, "team/app", make_image(), "1")
    with pytest.raises(ReplicationFailed) as failed:
        replicate_all(replicator, feed.new())
    reason = failed.value.reason
    assert f"rule {wrong.id}" in reason and f"rule {anonymous.id}" in reason
    assert "token endpoint answered 401" in reason or "HTTP 401" in reason
    assert "not-it" not in reason
    statuses = {r.id: s for r, s in rules.list()}
    assert statuses[wrong.id].last_error and statuses[anonymous.id].last_error
