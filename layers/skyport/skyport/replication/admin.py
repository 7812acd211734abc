"""Rule administration (`skyport replication add|list|remove|status`): rules are checked,
their destination probed, their password put in Secrets Manager, before the rule is
stored (a conditional write: a rule id is never reused)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..distribution_client import is_loopback
from ..storage.dynamodb.replication import DynamoReplicationStore
from ..storage.ports import ReplicationRule, ReplicationStatus, ReplicationStore
from .destinations import DestinationError, open_destination, secret_name
from .rules import (
    RuleInvalid,
    new_rule_id,
    validate_destination,
    validate_repository_pattern,
    validate_rule_id,
    validate_tag_pattern,
)

if TYPE_CHECKING:
    from ..registry import Registry


class RuleUnknown(LookupError):
    pass


class ReplicationRules:
    def __init__(self, registry: Registry, store: ReplicationStore | None = None) -> None:
        self._registry = registry
        self._store = store or DynamoReplicationStore(registry.clients.dynamodb, registry.settings.table)

    def add(
        self,
        repositories: str,
        destination: str,
        *,
        tags: str | None = None,
        deletes: bool = False,
        insecure: bool = False,
        username: str | None = None,
        password: str | None = None,
        probe: bool = True,
    ) -> ReplicationRule:
        """Check the rule, probe its destination (RuleInvalid saying why it is refused),
        store the password in Secrets Manager, then the rule."""
        if (username is None) != (password is None):
            raise RuleInvalid("--username and --password-env go together")
        if username is not None and (not username or ":" in username):
            raise RuleInvalid("the username must be non-empty and hold no ':'")
        rule = ReplicationRule(
            id=new_rule_id(),
            repositories=validate_repository_pattern(repositories),
            destination=validate_destination(destination),
            tags=None if tags is None else validate_tag_pattern(tags),
            deletes=deletes,
            insecure=insecure,
            credentials=username is not None,
            created_at=int(time.time()),
        )
        if insecure and rule.destination.startswith("skyport://"):
            raise RuleInvalid("--insecure is for http(s) destinations")
        if (
            rule.destination.startswith("http://")
            and not insecure
            and not is_loopback(urlsplit(rule.destination).netloc)
        ):
            # Secure by default: images, and credentials when the rule has some, in clear.
            raise RuleInvalid(
                "an http:// destination sends images (and credentials) in clear: add --insecure"
            )
        if probe:
            # Probed without credentials: GET /v2/ answers 200 or a challenge either way.
            try:
                open_destination(replace(rule, credentials=False), self._registry).probe()
            except DestinationError as error:
                raise RuleInvalid(f"the destination is unreachable: {error}") from None
        if username is not None:
            self._put_secret(rule.id, json.dumps({"username": username, "password": password}))
        if not self._store.add_rule(rule):
            raise RuleInvalid("a rule with that id exists already; try again")
        return rule

    def list(self) -> list[tuple[ReplicationRule, ReplicationStatus]]:
        return sorted(self._store.list_rules(), key=lambda pair: (pair[0].created_at, pair[0].id))

    def remove(self, rule_id: str) -> ReplicationRule:
        validate_rule_id(rule_id)
        found = self._store.get_rule(rule_id)
        if found is None or not self._store.remove_rule(rule_id):
            raise RuleUnknown(f"no replication rule {rule_id}")
        rule = found[0]
        if rule.credentials:
            self._delete_secret(rule_id)
        return rule

    def _put_secret(self, rule_id: str, value: str) -> None:
        client = self._registry.clients.secretsmanager
        name = secret_name(self._registry.settings, rule_id)
        try:
            client.create_secret(Name=name, SecretString=value, Description="Skyport replication credentials")
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=name, SecretString=value)

    def _delete_secret(self, rule_id: str) -> None:
        client = self._registry.clients.secretsmanager
        try:
            client.delete_secret(
                SecretId=secret_name(self._registry.settings, rule_id), ForceDeleteWithoutRecovery=True
            )
        except client.exceptions.ResourceNotFoundException:
            pass
