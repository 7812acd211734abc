"""AuthStore on the table: identities (users, robots), grants and token signing keys."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from .. import keys
from ..ports import IdentityRecord, Lockout
from .table import ITEM_EXISTS, B, N, S, Table, conditional, get_bytes, get_int, get_str

# Identities: created once, changed or removed only while they exist (ITEM_EXISTS).
IDENTITY_IS_NEW = "attribute_not_exists(PK)"
# The first admin is bootstrapped once in the registry's life.
BOOTSTRAP_NOT_DONE = "attribute_not_exists(PK)"
# Signing keys are replaced only by a writer that saw the current one (no lost rotation).
KEYS_ARE_NEW = "attribute_not_exists(PK)"
KEYS_UNCHANGED = "current_key = :replacing"
# A failure counts on the record only while the record's window is open; else it starts anew.
LOCKOUT_WINDOW_OPEN = "attribute_exists(PK) AND #start >= :cutoff"


def _identity_item(record: IdentityRecord) -> dict:
    return {
        **keys.identity(record.name),
        "kind": S(record.kind),
        "password_hash": S(record.password_hash),
        "admin": {"BOOL": record.admin},
        "groups": {"L": [S(group) for group in record.groups]},
        "generation": N(record.generation),
        "created_at": N(record.created_at),
        "identity_id": S(record.identity_id),
    }


def _identity_record(item: dict) -> IdentityRecord:
    return IdentityRecord(
        name=item[keys.SK]["S"],
        kind=get_str(item, "kind") or "user",
        password_hash=get_str(item, "password_hash") or "",
        admin=bool(item.get("admin", {}).get("BOOL", False)),
        groups=tuple(value["S"] for value in item.get("groups", {}).get("L", [])),
        generation=get_int(item, "generation"),
        created_at=get_int(item, "created_at"),
        identity_id=get_str(item, "identity_id") or "",
    )


class DynamoAuthStore:
    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def _partition(self, pk: str) -> Iterator[dict]:
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": S(pk)},
        }
        while True:
            page = self._table.call("query", **kwargs)
            yield from page.get("Items", [])
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_identity(self, name: str) -> IdentityRecord | None:
        item = self._table.get(keys.identity(name))
        return _identity_record(item) if item else None

    def create_identity(self, record: IdentityRecord) -> bool:
        ok, _, _ = conditional(lambda: self._table.put(_identity_item(record), IDENTITY_IS_NEW))
        return ok

    def update_identity(
        self,
        name: str,
        *,
        password_hash: str | None = None,
        admin: bool | None = None,
        groups: Sequence[str] | None = None,
    ) -> bool:
        # Attribute names go through placeholders: ADMIN and others are reserved words.
        sets, values, names = [], {}, {}
        if password_hash is not None:
            # A new secret: the generation moves on (refresh tokens of the old one die).
            sets += ["#hash = :hash", "#gen = #gen + :one"]
            values.update({":hash": S(password_hash), ":one": N(1)})
            names.update({"#hash": "password_hash", "#gen": "generation"})
        if admin is not None:
            sets.append("#admin = :admin")
            values[":admin"] = {"BOOL": admin}
            names["#admin"] = "admin"
        if groups is not None:
            sets.append("#groups = :groups")
            values[":groups"] = {"L": [S(group) for group in groups]}
            names["#groups"] = "groups"
        if not sets:
            return self.get_identity(name) is not None
        ok, _, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.identity(name),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=ITEM_EXISTS,
                ExpressionAttributeValues=values,
                ExpressionAttributeNames=names,
            )
        )
        return ok

    def delete_identity(self, name: str) -> bool:
        return self._table.delete_existing(keys.identity(name))

    def list_identities(self) -> list[IdentityRecord]:
        return [_identity_record(item) for item in self._partition(keys.IDENTITY)]

    def get_lockout(self, name: str, source: str) -> Lockout | None:
        item = self._table.get(keys.lockout(name, source))
        if not item:
            return None
        return Lockout(
            get_int(item, "failed_logins"), get_int(item, "window_start"), get_int(item, "locked_until")
        )

    def record_failed_login(
        self, name: str, source: str, now: int, threshold: int, max_lock_seconds: int, window: int
    ) -> None:
        key = keys.lockout(name, source)
        ok, response, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=key,
                UpdateExpression="ADD #failed :one",
                ConditionExpression=LOCKOUT_WINDOW_OPEN,
                ExpressionAttributeNames={"#failed": "failed_logins", "#start": "window_start"},
                ExpressionAttributeValues={":one": N(1), ":cutoff": N(now - window)},
                ReturnValues="ALL_NEW",
            )
        )
        if ok:
            item = response["Attributes"]
            failures, start = get_int(item, "failed_logins"), get_int(item, "window_start")
        else:
            # No record, or its window is over: the count starts again. Two racing
            # first failures may count as one; the lock comes one failure later.
            failures, start = 1, now
            self._table.put(
                {
                    **key,
                    "failed_logins": N(1),
                    "window_start": N(now),
                    "locked_until": N(0),
                    keys.TTL_ATTRIBUTE: N(now + window),
                }
            )
        if failures >= threshold:
            # 1 s after the threshold-th failure, then 2, 4, ... up to the cap.
            until = now + min(2 ** min(failures - threshold, 30), max_lock_seconds)
            self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=key,
                UpdateExpression="SET #locked = :until, #ttl = :ttl",
                ExpressionAttributeNames={"#locked": "locked_until", "#ttl": keys.TTL_ATTRIBUTE},
                ExpressionAttributeValues={":until": N(until), ":ttl": N(max(until, start + window))},
            )

    def clear_failed_logins(self, name: str, source: str | None = None) -> None:
        if source is not None:
            self._table.call("delete_item", TableName=self._table.name, Key=keys.lockout(name, source))
            return
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": S(keys.LOCKOUT), ":prefix": S(keys.lockout_prefix(name))},
        }
        while True:
            page = self._table.call("query", **kwargs)
            for item in page.get("Items", []):
                self._table.call(
                    "delete_item",
                    TableName=self._table.name,
                    Key={keys.PK: item[keys.PK], keys.SK: item[keys.SK]},
                )
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def list_grants(self) -> list[tuple[str, str, frozenset[str]]]:
        return [
            (
                get_str(item, "pattern") or "",
                get_str(item, "principal") or "",
                frozenset(value["S"] for value in item.get("actions", {}).get("L", [])),
            )
            for item in self._partition(keys.GRANT)
        ]

    def put_grant(self, pattern: str, principal: str, actions: frozenset[str]) -> None:
        self._table.put(
            {
                **keys.grant(pattern, principal),
                "pattern": S(pattern),
                "principal": S(principal),
                "actions": {"L": [S(a) for a in sorted(actions)]},
            }
        )

    def delete_grant(self, pattern: str, principal: str) -> bool:
        return self._table.delete_existing(keys.grant(pattern, principal))

    def get_signing_keys(self) -> tuple[bytes, bytes | None] | None:
        item = self._table.get(keys.signing_keys())
        if not item or get_bytes(item, "current_key") is None:
            return None
        return get_bytes(item, "current_key") or b"", get_bytes(item, "previous_key")

    def put_signing_keys(self, current: bytes, previous: bytes | None, replacing: bytes | None) -> bool:
        item = {**keys.signing_keys(), "current_key": B(current)}
        if previous is not None:
            item["previous_key"] = B(previous)
        if replacing is None:
            ok, _, _ = conditional(lambda: self._table.put(item, KEYS_ARE_NEW))
        else:
            ok, _, _ = conditional(
                lambda: self._table.put(item, KEYS_UNCHANGED, {":replacing": B(replacing)})
            )
        return ok

    def bootstrap_admin(self, record: IdentityRecord) -> bool:
        name = self._table.name
        try:
            self._table.transact(
                [
                    {
                        "Put": {
                            "TableName": name,
                            "Item": keys.bootstrap_marker(),
                            "ConditionExpression": BOOTSTRAP_NOT_DONE,
                        }
                    },
                    {
                        "Put": {
                            "TableName": name,
                            "Item": _identity_item(record),
                            "ConditionExpression": IDENTITY_IS_NEW,
                        }
                    },
                ]
            )
        except ClientError as error:
            if "ConditionalCheckFailed" in getattr(error, "reasons", []):
                return False
            raise
        return True
