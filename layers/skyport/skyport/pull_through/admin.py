"""The Secrets Manager side of `skyport cache add|remove` against a stack: a rule's login
put in, or removed. Run by the CLI with the operator's credentials, never by a function
(tests/unit/test_template.py keeps it out of the API role's reckoning)."""

from __future__ import annotations

from typing import Any


def store_login(client: Any, name: str, value: str) -> None:
    try:
        client.create_secret(
            Name=name, SecretString=value, Description="Skyport pull-through cache credentials"
        )
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=value)


def remove_login(client: Any, name: str) -> None:
    try:
        client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    except client.exceptions.ResourceNotFoundException:
        pass
