"""`skyport webhook add|list|remove|test`: webhook subscriptions (skyport/webhooks.py).

Like the admin commands (admin.py), they write the registry's table directly and find it
the same way: the `make run` in this directory (``.skyport/serve.json``), ``--stack NAME``
or ``--table NAME [--dynamodb-endpoint URL]``. Signing secrets go to Secrets Manager
(``<hook secret prefix>webhooks/<id>``): on AWS with boto3's default credentials; locally
on the embedded moto, which serves Secrets Manager too (or AWS_ENDPOINT_URL_SECRETS_MANAGER).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from . import admin

EVENTS_HELP = (
    "comma-separated event types (repeatable): manifest.pushed, manifest.deleted, tag.created, "
    "tag.moved, tag.deleted, repository.created, repository.deleted, or a family such as tag.*; "
    "default: every type"
)


class SecretsManagerWriter:
    """skyport.webhooks.SecretWriter on Secrets Manager. Here, not in the layer: only this
    command writes signing secrets; the deployed functions only read them."""

    def __init__(self, client) -> None:
        self._client = client

    def create(self, name: str, value: str, description: str) -> None:
        self._client.create_secret(Name=name, SecretString=value, Description=description)

    def delete(self, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            # No recovery window: webhook ids are never reused, and a removed webhook's
            # secret should not linger.
            self._client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise


def _admin(args: argparse.Namespace):
    from skyport.webhooks import WebhookAdmin

    registry = admin.target_registry(args)
    prefix = os.environ.get("SKYPORT_HOOK_SECRET_PREFIX")
    if prefix:  # as the stack's functions are told (template.yaml), when it is not the default
        from skyport.registry import Registry

        registry = Registry(replace(registry.settings, hook_secret_prefix=prefix), clients=registry.clients)
    endpoint = registry.settings.dynamodb_endpoint
    if endpoint and not os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        # A local table (make run's embedded moto): its Secrets Manager is the same moto.
        os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = endpoint
    return WebhookAdmin(registry, SecretsManagerWriter(registry.clients.secretsmanager))


def _describe(webhook) -> str:
    events = ",".join(webhook.event_types) or "every event"
    flags = " (TLS not verified)" if webhook.insecure else ""
    return f"POST {webhook.url}{flags} for {events} on {webhook.repositories}"


def add(args: argparse.Namespace) -> None:
    from skyport.webhooks import InvalidWebhook

    secret = None
    if args.secret_env:
        secret = os.environ.get(args.secret_env)
        if not secret:
            raise InvalidWebhook(f"--secret-env {args.secret_env}: that variable is unset or empty")
    webhook, generated = _admin(args).add(
        args.url,
        event_types=args.events or (),
        repositories=args.repositories,
        insecure=args.insecure,
        secret=secret,
    )
    print(f"webhook {webhook.id} added: {_describe(webhook)}")
    if generated:
        print(f"signing secret (shown once; receivers verify Skyport-Signature with it): {generated}")
    else:
        print(f"signing secret: the value of ${args.secret_env}")


def list_(args: argparse.Namespace) -> None:
    webhooks = _admin(args).list_webhooks()
    if args.json:
        print(json.dumps([webhook.fields() for webhook in webhooks], indent=2))
        return
    for webhook in webhooks:
        print(f"{webhook.id}\t{_describe(webhook)}")


def remove(args: argparse.Namespace) -> None:
    _admin(args).remove(args.id)
    print(f"webhook {args.id} removed, with its signing secret")


def test(args: argparse.Namespace) -> int:
    answer = _admin(args).test(args.id)
    if not answer.ok:
        print(f"skyport webhook test: {args.id}: {answer.error}", file=sys.stderr)
        return 1
    print(f"signed ping delivered to {args.id}: HTTP {answer.status}")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    webhook = commands.add_parser(
        "webhook",
        help="webhooks: add, list, remove, test",
        description="HTTP receivers of registry events, in Distribution's notification envelope, "
        "signed with HMAC-SHA256 (README, Hooks).",
    )
    sub = webhook.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "add",
        help="subscribe an http(s) URL to registry events",
        description="Subscribe URL to registry events. The signing secret comes from --secret-env "
        "or is generated and shown once; it is kept in Secrets Manager only.",
    )
    p.add_argument("url", help="http:// or https:// (no credentials in it)")
    p.add_argument("--events", action="append", help=EVENTS_HELP)
    p.add_argument(
        "--repositories",
        default="*",
        help="repositories whose events it gets: a name or a pattern ('team-a/*'); default *",
    )
    p.add_argument("--secret-env", metavar="VAR", help="take the signing secret from this variable")
    p.add_argument("--insecure", action="store_true", help="https without certificate checks")
    admin.target_options(p)
    p.set_defaults(run=add)
    p = sub.add_parser("list", help="list webhooks", description="List webhook subscriptions.")
    p.add_argument("--json", action="store_true")
    admin.target_options(p)
    p.set_defaults(run=list_)
    p = sub.add_parser(
        "remove", help="remove a webhook", description="Remove a webhook and its signing secret."
    )
    p.add_argument("id")
    admin.target_options(p)
    p.set_defaults(run=remove)
    p = sub.add_parser(
        "test",
        help="send a signed ping",
        description="Send a signed ping (action 'ping', skyport.eventType webhook.ping) to the "
        "webhook, whatever its filters; exit 1 unless it answers 2xx.",
    )
    p.add_argument("id")
    admin.target_options(p)
    p.set_defaults(run=test)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from skyport.webhooks import InvalidWebhook, WebhookNotFound

    try:
        return args.run(args) or 0
    except (InvalidWebhook, WebhookNotFound, admin.TargetError) as error:
        print(f"skyport webhook {args.action}: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as error:
        print(f"skyport webhook {args.action}: AWS: {error}", file=sys.stderr)
        return 1
