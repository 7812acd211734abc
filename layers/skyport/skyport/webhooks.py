"""Webhooks (issue 11): subscriptions, Distribution's notification envelope, signatures,
delivery.

A webhook is an admin's subscription (``skyport webhook add``): an http(s) URL, the event
types it wants (all by default) and a repository pattern (``*`` by default, the grants'
grammar: ``team-a/*``). Its signing secret lives in Secrets Manager at
``settings.hook_secrets + "webhooks/<id>"``, never in the table, a log or an event.

The envelope is CNCF Distribution's notification format ("Work with notifications"),
media type ``application/vnd.docker.distribution.events.v2+json``, one event per request::

    {"events": [{
        "id":        our deterministic event id (skyport.events): de-duplicate on it,
        "timestamp": the stream record's time (RFC 3339; the delivery's when unknown),
        "action":    "push" or "delete" (action()),
        "target":    {"mediaType", "digest", "size", "length", "repository", "url", "tag"},
        "request":   {}, "actor": {}   (the table's stream knows neither; Distribution's
                                        receivers accept them empty),
        "source":    {"addr": the registry's host, "instanceID": this process},
        "skyport":   our fields: eventType ("tag.moved"), orderingKey, sequenceNumber,
                     and when present previousDigest, artifactType, subject
    }]}

How our event types map to Distribution's actions, whose targets we follow:

================== ======== ===========================================================
type               action   target
================== ======== ===========================================================
manifest.pushed    push     mediaType, digest, size, length, repository, url
tag.created        push     the same, and tag (Distribution's manifest push "with tag")
tag.moved          push     the same, the digest the tag names now (the old one:
                            skyport.previousDigest)
tag.deleted        delete   repository, tag (Distribution's tag delete; the digest it
                            named: skyport.previousDigest)
manifest.deleted   delete   repository, digest (Distribution's manifest delete)
repository.created push     repository (Distribution has no such event: a repository
                            begins with its first push)
repository.deleted delete   repository (Distribution's repository delete)
================== ======== ===========================================================

``url`` is the manifest by digest on the registry's public URL (``SKYPORT_REGISTRY_URL``),
left out when that is not set. ``skyport.eventType`` is the exact type; receivers that
need more than push/delete read it.

Signature: ``Skyport-Signature: t=<unix seconds>,v1=<hex>``, where hex is
HMAC-SHA256(secret, "<t>.<body>") over the exact bytes of the body; receivers compare in
constant time and refuse a ``t`` further than REPLAY_WINDOW_SECONDS (5 minutes) from their
clock. ``Skyport-Event-Id`` repeats the event id (at-least-once: a receiver may see an
event twice, after a lost answer). The README's "Hooks" section has a receiver's check.

Delivery (``WebhookDispatcher.deliver``): a POST with short connect and read timeouts;
success is a 2xx; redirects are not followed (a 3xx fails: a receiver that moved is
re-added with its new URL, never followed to wherever it points). After a 2xx a delivery
record (table, TTL DELIVERY_RECORD_SECONDS) says this webhook has this event, so a retry
of the event (the queue redelivers it while any receiver failed) skips the receivers that
already acknowledged it. Retries, backoff and the dead-letter queue are the queue's
(skyport/sqs_batches.py). Failure reasons name the webhook id and its scheme://host[:port]
(a URL's path or query may hold a receiver's token), and the status or error: never the
secret.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .auth.policy import InvalidName, pattern_matches, validate_pattern
from .events import (
    EVENT_TYPES,
    MANIFEST_DELETED,
    REPOSITORY_DELETED,
    TAG_CREATED,
    TAG_DELETED,
    TAG_MOVED,
    RegistryEvent,
)
from .outbound_urls import AddressRefused, UrlRefused, check_http_url, connect_checked

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger(__name__)

ENVELOPE_MEDIA_TYPE = "application/vnd.docker.distribution.events.v2+json"
SIGNATURE_HEADER = "Skyport-Signature"
EVENT_ID_HEADER = "Skyport-Event-Id"
EVENT_TYPE_HEADER = "Skyport-Event-Type"
WEBHOOK_ID_HEADER = "Skyport-Webhook-Id"
USER_AGENT = "Skyport-Webhooks/1"
# Receivers refuse a signature whose t is further than this from their clock (README).
REPLAY_WINDOW_SECONDS = 300
# A delivery record outlives every retry of its event: SQS keeps a message at most 14 days
# (MessageRetentionPeriod), and a redrive from the dead-letter queue comes within that.
DELIVERY_RECORD_SECONDS = 14 * 24 * 3600
# Short: a receiver that hangs must not hold the others' deliveries nor the function.
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 5.0
# Receivers' answers are not read beyond this (only the status matters).
MAX_ANSWER_BYTES = 4096
# Generated secrets: 256 bits. Given ones (--secret-env) at least this long.
MIN_SECRET_LENGTH = 16
# Receivers at once for one event.
MAX_PARALLEL_DELIVERIES = 8
# Signing secrets are read from Secrets Manager at most this often per webhook and process.
SECRET_CACHE_SECONDS = 300
SECRET_NAME_PART = "webhooks/"

# Distribution's actions. Deletions are "delete" (a later type named "<kind>.deleted" too),
# everything else is "push": a manifest, a tag or a repository came into being or moved.
_DELETIONS = frozenset((MANIFEST_DELETED, TAG_DELETED, REPOSITORY_DELETED))
PING = "webhook.ping"
# `--events` accepts a type or a family: "tag.*" is tag.created, tag.moved, tag.deleted.
_FAMILIES = {f"{kind.split('.')[0]}.*" for kind in EVENT_TYPES}
# One per process, as Distribution's instanceID: it changes when the process does.
_INSTANCE_ID = str(uuid.uuid4())


class InvalidWebhook(ValueError):
    """A subscription refused at add: bad URL, pattern, event type or secret."""


class WebhookNotFound(LookupError):
    pass


class WebhookDeliveryFailed(Exception):
    """Some subscribed receivers did not acknowledge the event; ``reason`` names each
    (webhook id, scheme://host, status or error). The whole event is retried later; the
    receivers that did acknowledge it are skipped then."""

    def __init__(self, reason: str, failures: Sequence[ReceiverFailure] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failures = tuple(failures)


@dataclass(frozen=True)
class ReceiverFailure:
    webhook_id: str
    reason: str


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    event_types: tuple[str, ...] = ()  # empty: every event type
    repositories: str = "*"
    insecure: bool = False  # https without certificate checks (a receiver's own CA)
    created_at: int = 0

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Webhook:
        return cls(
            id=fields["id"],
            url=fields["url"],
            event_types=tuple(fields.get("event_types") or ()),
            repositories=fields.get("repositories") or "*",
            insecure=bool(fields.get("insecure")),
            created_at=int(fields.get("created_at") or 0),
        )

    def fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "event_types": list(self.event_types),
            "repositories": self.repositories,
            "insecure": self.insecure,
            "created_at": self.created_at,
        }

    def wants(self, event: RegistryEvent) -> bool:
        """Whether this subscription's event types and repository pattern take ``event``."""
        if self.event_types and not any(_type_matches(wanted, event.type) for wanted in self.event_types):
            return False
        return pattern_matches(self.repositories, event.repository)

    @property
    def receiver(self) -> str:
        """scheme://host[:port]: how reasons and logs name the receiver (a path or query
        may carry the receiver's own token)."""
        return _receiver(self.url)


class WebhookStore(Protocol):
    """The table's side (storage/dynamodb/webhooks.py)."""

    def create_webhook(self, fields: dict[str, Any]) -> bool: ...  # False: the id exists
    def list_webhooks(self) -> list[dict[str, Any]]: ...
    def get_webhook(self, webhook_id: str) -> dict[str, Any] | None: ...
    def delete_webhook(self, webhook_id: str) -> bool: ...  # False: no such webhook
    def delivered_to(self, event_id: str) -> set[str]: ...
    def record_delivery(
        self, event_id: str, webhook_id: str, status: int, now: int, expires_at: int
    ) -> None: ...


# --- validation -------------------------------------------------------------------------


def action(event_type: str) -> str:
    """Distribution's action for one of our event types (module docstring)."""
    return "delete" if event_type in _DELETIONS or event_type.endswith(".deleted") else "push"


def _type_matches(wanted: str, event_type: str) -> bool:
    if wanted.endswith(".*"):
        return event_type.startswith(wanted[:-1])
    return wanted == event_type


def parse_event_types(values: Iterable[str]) -> tuple[str, ...]:
    """Event types from ``--events`` (comma-separated, repeatable): each an event type of
    skyport.events.EVENT_TYPES or a family ("tag.*"); "*" or nothing means every type."""
    chosen: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            if name == "*":
                return ()
            if name not in EVENT_TYPES and name not in _FAMILIES:
                known = ", ".join((*EVENT_TYPES, *sorted(_FAMILIES)))
                raise InvalidWebhook(f"unknown event type {name[:40]!r}: one of {known}, or *")
            if name not in chosen:
                chosen.append(name)
    return tuple(chosen)


def validate_repositories(pattern: str) -> str:
    try:
        return validate_pattern(pattern)
    except InvalidName as error:
        raise InvalidWebhook(str(error)) from None


def validate_url(url: str) -> str:
    """An absolute http(s) URL Skyport may call (outbound_urls.py), refused otherwise with
    the reason. Receivers authenticate deliveries by the Skyport-Signature header, so a
    webhook URL needs no credentials of its own."""
    try:
        check_http_url(url, "a webhook URL", ": receivers verify the Skyport-Signature header instead")
    except UrlRefused as refused:
        raise InvalidWebhook(str(refused)) from None
    return url


def _receiver(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        return "(unreadable URL)"


def validate_secret(secret: str) -> str:
    if len(secret) < MIN_SECRET_LENGTH:
        raise InvalidWebhook(f"a signing secret has at least {MIN_SECRET_LENGTH} characters")
    if not secret.isprintable():
        raise InvalidWebhook("a signing secret is printable text")
    return secret


# --- the envelope and the signature -------------------------------------------------


def _rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def envelope_event(event: RegistryEvent, registry_url: str | None, now: float) -> dict[str, Any]:
    """One event of the envelope (module docstring)."""
    target: dict[str, Any] = {"repository": event.repository}
    if event.type in (TAG_CREATED, TAG_MOVED, TAG_DELETED):
        target["tag"] = event.tag
    elif event.tags:  # manifest.pushed by tag: Distribution names the tag of a push by tag
        target["tag"] = event.tags[0]
    if event.type not in (TAG_DELETED, REPOSITORY_DELETED) and event.digest:
        target["digest"] = event.digest
        if action(event.type) == "push":
            if event.media_type:
                target["mediaType"] = event.media_type
            if event.size is not None:
                target["size"] = target["length"] = event.size
            if registry_url:
                target["url"] = f"{registry_url}/v2/{event.repository}/manifests/{event.digest}"
    extension = {
        "eventType": event.type,
        "orderingKey": event.ordering_key,
        "sequenceNumber": event.sequence_number,
        "previousDigest": event.previous_digest,
        "artifactType": event.artifact_type,
        "subject": event.subject,
    }
    return {
        "id": event.id,
        "timestamp": event.time or _rfc3339(now),
        "action": action(event.type),
        "target": target,
        "request": {},
        "actor": {},
        "source": _source(registry_url),
        "skyport": {name: value for name, value in extension.items() if value not in (None, "")},
    }


def _source(registry_url: str | None) -> dict[str, str]:
    source = {"instanceID": _INSTANCE_ID}
    if registry_url:
        source["addr"] = urlsplit(registry_url).netloc
    return source


def encode(envelope: Mapping[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Skyport-Signature header's value: t=<unix seconds>,v1=<hex HMAC-SHA256 of
    "<t>.<body>">."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# --- sending ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """How a receiver answered: ``status`` (0 when nothing came back) and, when it failed,
    ``error`` (a status, a timeout, a refused connection), safe to log."""

    status: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.error


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    insecure: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
) -> Answer:
    """POST ``body`` to ``url`` and say how it went; never raises for the receiver's faults.
    http.client follows no redirect: a 3xx is reported as one."""
    try:
        validate_url(url)  # stored URLs are checked again: the table is not the only writer
    except InvalidWebhook as error:
        return Answer(0, f"URL refused: {error}")
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=connect_timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=connect_timeout)
    # Connected only as outbound_urls.connect_checked allows: never link-local or cloud
    # metadata, whatever the URL's name resolves to or however its address is spelled.
    connection._create_connection = lambda address, timeout, source_address=None: connect_checked(  # type: ignore[attr-defined]
        address[0], address[1], timeout, allow_internal=True, source_address=source_address
    )
    try:
        connection.connect()
        if connection.sock is not None:
            connection.sock.settimeout(read_timeout)
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        response.read(MAX_ANSWER_BYTES)
        status = response.status
    except TimeoutError:
        return Answer(0, f"no answer within {connect_timeout:g} s (connect) / {read_timeout:g} s (read)")
    except ssl.SSLError as error:
        return Answer(0, f"TLS: {error.reason or type(error).__name__}")
    except ConnectionRefusedError:
        return Answer(0, "connection refused")
    except socket.gaierror:
        return Answer(0, "host name not resolved")
    except AddressRefused as refused:
        return Answer(0, f"not connected: {refused}")
    except (OSError, http.client.HTTPException) as error:
        return Answer(0, f"{type(error).__name__}: {error}"[:200])
    finally:
        connection.close()
    if 300 <= status < 400:
        return Answer(status, f"HTTP {status} (redirects are not followed)")
    if not 200 <= status < 300:
        return Answer(status, f"HTTP {status}")
    return Answer(status)


class _Secrets:
    """Signing secrets from Secrets Manager, cached per process for SECRET_CACHE_SECONDS
    (Lambda instances live on between events)."""

    def __init__(self, registry: Registry, clock: Callable[[], float]) -> None:
        self._registry = registry
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}

    def name(self, webhook_id: str) -> str:
        return secret_name(self._registry.settings.hook_secrets, webhook_id)

    def get(self, webhook_id: str) -> str:
        cached = self._cache.get(webhook_id)
        if cached and self._clock() - cached[1] < SECRET_CACHE_SECONDS:
            return cached[0]
        response = self._registry.clients.secretsmanager.get_secret_value(SecretId=self.name(webhook_id))
        value = response["SecretString"]
        self._cache[webhook_id] = (value, self._clock())
        return value

    def forget(self, webhook_id: str) -> None:
        self._cache.pop(webhook_id, None)


def secret_name(prefix: str, webhook_id: str) -> str:
    return f"{prefix}{SECRET_NAME_PART}{webhook_id}"


class _LazyStore:
    """The table's store, made on first use: building a dispatcher in a function's init
    phase creates no boto3 client (storage/clients.py)."""

    def __init__(self, registry: Registry, store: WebhookStore | None) -> None:
        self._registry = registry
        self._given = store

    @cached_property
    def store(self) -> WebhookStore:
        if self._given is not None:
            return self._given
        from .storage.dynamodb.webhooks import DynamoWebhookStore

        return DynamoWebhookStore(self._registry.clients.dynamodb, self._registry.settings.table)


@dataclass
class _Sender:
    """Signs and sends one envelope to one webhook."""

    secrets: _Secrets
    registry_url: str | None
    connect_timeout: float
    read_timeout: float
    clock: Callable[[], float] = time.time
    extra_headers: dict[str, str] = field(default_factory=dict)

    def send(self, webhook: Webhook, event_id: str, event_type: str, body: bytes) -> Answer:
        from botocore.exceptions import BotoCoreError, ClientError  # deferred with boto3 (clients.py)

        try:
            secret = self.secrets.get(webhook.id)
        except (ClientError, BotoCoreError, KeyError) as error:
            code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
            return Answer(0, f"signing secret unavailable ({code or type(error).__name__})")
        headers = {
            "Content-Type": ENVELOPE_MEDIA_TYPE,
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event_type,
            WEBHOOK_ID_HEADER: webhook.id,
            SIGNATURE_HEADER: signature(secret, int(self.clock()), body),
        }
        return post(
            webhook.url,
            body,
            headers,
            insecure=webhook.insecure,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )


class WebhookDispatcher:
    """Delivers registry events to the webhooks subscribed to them (module docstring)."""

    def __init__(
        self,
        registry: Registry,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
        store: WebhookStore | None = None,
    ) -> None:
        self._tables = _LazyStore(registry, store)
        self._clock = clock
        self._sender = _Sender(
            _Secrets(registry, clock), registry.settings.registry_url, connect_timeout, read_timeout, clock
        )

    def subscribers(self, event: RegistryEvent) -> list[Webhook]:
        return [
            webhook
            for webhook in (Webhook.from_fields(fields) for fields in self._tables.store.list_webhooks())
            if webhook.wants(event)
        ]

    def deliver(self, event: RegistryEvent) -> None:
        """Send ``event`` to every subscribed webhook that has not acknowledged it yet;
        record each 2xx. Raises WebhookDeliveryFailed naming the receivers that failed.
        Storage faults (StorageUnavailable) propagate: the whole event is retried."""
        subscribed = self.subscribers(event)
        if not subscribed:
            return
        done = self._tables.store.delivered_to(event.id)
        pending = [webhook for webhook in subscribed if webhook.id not in done]
        if not pending:
            return
        body = encode({"events": [envelope_event(event, self._sender.registry_url, self._clock())]})
        if len(pending) == 1:
            answers = [self._sender.send(pending[0], event.id, event.type, body)]
        else:
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_DELIVERIES, len(pending))) as pool:
                answers = list(
                    pool.map(lambda webhook: self._sender.send(webhook, event.id, event.type, body), pending)
                )
        failures = []
        for webhook, answer in zip(pending, answers, strict=True):
            if answer.ok:
                log.info(
                    "webhook %s (%s) acknowledged event %s: HTTP %s",
                    webhook.id,
                    webhook.receiver,
                    event.id,
                    answer.status,
                )
                self._acknowledged(event, webhook, answer)
            else:
                failures.append(
                    ReceiverFailure(webhook.id, f"{webhook.id} ({webhook.receiver}): {answer.error}")
                )
        if failures:
            reason = f"{len(failures)} of {len(pending)} webhooks failed: " + "; ".join(
                failure.reason for failure in failures
            )
            raise WebhookDeliveryFailed(reason, failures)

    def _acknowledged(self, event: RegistryEvent, webhook: Webhook, answer: Answer) -> None:
        """Record the 2xx. If the record cannot be written the receiver got the event all
        the same; a retry may send it again (at-least-once: it de-duplicates on the id)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from .storage.ports import StorageUnavailable

        now = int(self._clock())
        try:
            self._tables.store.record_delivery(
                event.id, webhook.id, answer.status, now, now + DELIVERY_RECORD_SECONDS
            )
        except (StorageUnavailable, ClientError, BotoCoreError) as error:
            log.warning(
                "webhook %s acknowledged event %s but its delivery record was not written: %s",
                webhook.id,
                event.id,
                type(error).__name__,
            )


class SecretWriter(Protocol):
    """Writes signing secrets to Secrets Manager. Only the CLI does
    (skyport_cli.webhooks.SecretsManagerWriter): the deployed functions read secrets and
    their roles grant no write, so the layer holds no call that writes one."""

    def create(self, name: str, value: str, description: str) -> None: ...
    def delete(self, name: str) -> None: ...  # a secret already gone is no error


class WebhookAdmin:
    """Subscriptions for the CLI: add, list, remove, test (a signed ping)."""

    def __init__(
        self,
        registry: Registry,
        secret_writer: SecretWriter,
        *,
        store: WebhookStore | None = None,
        clock: Callable[[], float] = time.time,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        self._registry = registry
        self._tables = _LazyStore(registry, store)
        self._clock = clock
        self._secrets = _Secrets(registry, clock)
        self._secret_writer = secret_writer
        self._sender = _Sender(
            self._secrets, registry.settings.registry_url, connect_timeout, read_timeout, clock
        )

    def add(
        self,
        url: str,
        *,
        event_types: Iterable[str] = (),
        repositories: str = "*",
        insecure: bool = False,
        secret: str | None = None,
    ) -> tuple[Webhook, str | None]:
        """Create a subscription. Returns it and the generated secret (None when
        ``secret`` was given): the caller shows it once; it is stored only in Secrets
        Manager."""
        webhook = Webhook(
            id=f"wh-{secrets.token_hex(6)}",
            url=validate_url(url),
            event_types=parse_event_types(event_types),
            repositories=validate_repositories(repositories),
            insecure=insecure,
            created_at=int(self._clock()),
        )
        if insecure and not url.startswith("https://"):
            raise InvalidWebhook("--insecure (no certificate checks) applies to https:// URLs only")
        generated = None
        if secret is None:
            secret = generated = secrets.token_urlsafe(32)
        validate_secret(secret)
        # The secret first: a subscription is never visible without its secret.
        self._secret_writer.create(
            self._secrets.name(webhook.id),
            secret,
            f"Skyport webhook {webhook.id}: HMAC-SHA256 signing secret",
        )
        try:
            created = self._tables.store.create_webhook(webhook.fields())
        except Exception:
            self._delete_secret(webhook.id)
            raise
        if not created:  # 48 random bits collided: nothing of ours to keep
            self._delete_secret(webhook.id)
            raise InvalidWebhook("webhook id collision, try again")
        return webhook, generated

    def list_webhooks(self) -> list[Webhook]:
        return sorted(
            (Webhook.from_fields(fields) for fields in self._tables.store.list_webhooks()),
            key=lambda webhook: (webhook.created_at, webhook.id),
        )

    def get(self, webhook_id: str) -> Webhook:
        fields = self._tables.store.get_webhook(webhook_id)
        if fields is None:
            raise WebhookNotFound(f"no webhook {webhook_id[:40]!r} (see `skyport webhook list`)")
        return Webhook.from_fields(fields)

    def remove(self, webhook_id: str) -> None:
        """The subscription first (no delivery starts after it), then its secret."""
        if not self._tables.store.delete_webhook(webhook_id):
            raise WebhookNotFound(f"no webhook {webhook_id[:40]!r} (see `skyport webhook list`)")
        self._delete_secret(webhook_id)

    def _delete_secret(self, webhook_id: str) -> None:
        self._secrets.forget(webhook_id)
        self._secret_writer.delete(self._secrets.name(webhook_id))

    def test(self, webhook_id: str) -> Answer:
        """Send a signed ping (action "ping", skyport.eventType "webhook.ping", a new id)
        whatever the subscription's filters; records nothing."""
        webhook = self.get(webhook_id)
        now = self._clock()
        event_id = f"ping-{uuid.uuid4().hex}"
        ping = {
            "id": event_id,
            "timestamp": _rfc3339(now),
            "action": "ping",
            "target": {},
            "request": {},
            "actor": {},
            "source": _source(self._registry.settings.registry_url),
            "skyport": {"eventType": PING, "webhookId": webhook.id},
        }
        return self._sender.send(webhook, event_id, PING, encode({"events": [ping]}))
