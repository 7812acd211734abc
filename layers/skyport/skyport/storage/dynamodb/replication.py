"""ReplicationStore on the table: rules with their status, and the ordering guards
(keys.py: REPLICATION / RULE#<id>, REPLICATION_ORDER#<rule id> / <ordering key>)."""

from __future__ import annotations

from typing import Any

from .. import keys
from ..ports import ReplicationRule, ReplicationStatus
from .table import ITEM_EXISTS, N, S, Table, conditional, get_int, get_str

# A rule id names one rule for its whole life: adding never replaces one.
RULE_IS_NEW = "attribute_not_exists(PK)"
# Status is written only on a rule that still exists (ITEM_EXISTS): a rule removed while
# an event was in flight does not come back as a status-only item.
RULE_EXISTS = ITEM_EXISTS
# The guard moves forward only: an event older than (or the same as) one applied for the
# same tag or manifest is never recorded over it, so a late event cannot undo a newer one.
APPLIED_IS_OLDER = "attribute_not_exists(PK) OR applied_sequence < :sequence"

# DynamoDB Streams sequence numbers are decimal strings of 21 to 40 digits; zero-padded to
# this width they compare as strings exactly as they do as integers (DynamoDB numbers keep
# only 38 significant digits, so they cannot hold them).
SEQUENCE_WIDTH = 48


def sequence_text(sequence_number: int) -> str:
    text = str(sequence_number)
    if sequence_number < 0 or len(text) > SEQUENCE_WIDTH:
        raise ValueError(f"sequence number out of range: {text[:60]}")
    return text.zfill(SEQUENCE_WIDTH)


def _rule_item(rule: ReplicationRule) -> dict:
    item = {
        **keys.replication_rule(rule.id),
        "repositories": S(rule.repositories),
        "destination": S(rule.destination),
        "deletes": {"BOOL": rule.deletes},
        "insecure": {"BOOL": rule.insecure},
        "credentials": {"BOOL": rule.credentials},
        "created_at": N(rule.created_at),
    }
    if rule.tags is not None:
        item["tags"] = S(rule.tags)
    return item


def _flag(item: dict, name: str) -> bool:
    return bool(item.get(name, {}).get("BOOL", False))


def _rule(item: dict) -> tuple[ReplicationRule, ReplicationStatus]:
    rule = ReplicationRule(
        id=item[keys.SK]["S"].removeprefix(keys.REPLICATION_RULE_PREFIX),
        repositories=get_str(item, "repositories") or "",
        destination=get_str(item, "destination") or "",
        tags=get_str(item, "tags"),
        deletes=_flag(item, "deletes"),
        insecure=_flag(item, "insecure"),
        credentials=_flag(item, "credentials"),
        created_at=get_int(item, "created_at"),
    )
    lag = item.get("lag_seconds")
    status = ReplicationStatus(
        last_success_at=get_int(item, "last_success_at"),
        last_error_at=get_int(item, "last_error_at"),
        last_error=get_str(item, "last_error") or "",
        lag_seconds=float(lag["N"]) if lag else None,
        applied=get_int(item, "applied"),
    )
    return rule, status


class DynamoReplicationStore:
    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    def add_rule(self, rule: ReplicationRule) -> bool:
        ok, _, _ = conditional(lambda: self._table.put(_rule_item(rule), RULE_IS_NEW))
        return ok

    def get_rule(self, rule_id: str) -> tuple[ReplicationRule, ReplicationStatus] | None:
        item = self._table.get(keys.replication_rule(rule_id))
        return _rule(item) if item else None

    def list_rules(self) -> list[tuple[ReplicationRule, ReplicationStatus]]:
        return [_rule(item) for item in self._table.query(keys.REPLICATION, keys.REPLICATION_RULE_PREFIX)]

    def remove_rule(self, rule_id: str) -> bool:
        return self._table.delete_existing(keys.replication_rule(rule_id), RULE_EXISTS)

    def _update_status(self, rule_id: str, expression: str, values: dict) -> None:
        conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.replication_rule(rule_id),
                UpdateExpression=expression,
                ConditionExpression=RULE_EXISTS,
                ExpressionAttributeValues=values,
            )
        )

    def record_success(self, rule_id: str, at: int, lag_seconds: float | None) -> None:
        expression = "SET last_success_at = :at ADD applied :one"
        values: dict = {":at": N(at), ":one": N(1)}
        if lag_seconds is not None:
            expression = "SET last_success_at = :at, lag_seconds = :lag ADD applied :one"
            values[":lag"] = {"N": f"{lag_seconds:.3f}"}
        self._update_status(rule_id, expression, values)

    def record_error(self, rule_id: str, at: int, reason: str) -> None:
        self._update_status(
            rule_id,
            "SET last_error_at = :at, last_error = :reason",
            {":at": N(at), ":reason": S(reason[:2000] or "unknown")},
        )

    def applied_sequence(self, rule_id: str, ordering_key: str) -> int | None:
        item = self._table.get(keys.replication_order(rule_id, ordering_key), projection="applied_sequence")
        text = get_str(item, "applied_sequence") if item else None
        return int(text) if text else None

    def record_applied(self, rule_id: str, ordering_key: str, sequence_number: int, expires_at: int) -> bool:
        item = {
            **keys.replication_order(rule_id, ordering_key),
            "applied_sequence": S(sequence_text(sequence_number)),
            keys.TTL_ATTRIBUTE: N(expires_at),
        }
        ok, _, _ = conditional(
            lambda: self._table.put(
                item, APPLIED_IS_OLDER, values={":sequence": S(sequence_text(sequence_number))}
            )
        )
        return ok
