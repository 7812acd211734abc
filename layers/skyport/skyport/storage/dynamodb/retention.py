"""Retention on the table (keys: ``storage/keys.py``, "retention"; the rules' meaning and
the run: skyport/retention.py): the rules, the scheduled run's cursor, and the paged
reads of one repository that an evaluation needs (manifests, tags) and of the catalog."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import keys
from .table import N, S, Table, conditional, get_int, get_str

# A rule id is made once per `retention add` (random): never overwrite another rule.
RULE_IS_NEW = "attribute_not_exists(PK)"

_PERIODS = ("keep_pushed_within", "keep_pulled_within", "untagged_after")


class DynamoRetentionStore:
    """What skyport.retention.RetentionStore asks, on the table."""

    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    # --- rules --------------------------------------------------------------------------

    def create_rule(self, fields: dict[str, Any]) -> bool:
        item: dict[str, Any] = {
            **keys.retention_rule(fields["id"]),
            "repositories": S(fields["repositories"]),
            "keep_tags": {"L": [S(pattern) for pattern in fields["keep_tags"]]},
            "created_ms": N(fields["created_ms"]),
        }
        if fields.get("keep_last") is not None:
            item["keep_last"] = N(fields["keep_last"])
        for name in _PERIODS:
            if fields.get(name) is not None:
                item[name] = N(fields[name])
        ok, _, _ = conditional(lambda: self._table.put(item, RULE_IS_NEW))
        return ok

    def list_rules(self) -> list[dict[str, Any]]:
        """Every rule: one Query of the RETENTION partition's RULE# items (paged)."""
        return [_rule_fields(item) for item in self._table.query(keys.RETENTION, keys.RETENTION_RULE_PREFIX)]

    def delete_rule(self, rule_id: str) -> bool:
        return self._table.delete_existing(keys.retention_rule(rule_id))

    # --- the scheduled run's place ------------------------------------------------------

    def get_cursor(self) -> str | None:
        item = self._table.get(keys.retention_cursor())
        return get_str(item, "after_repository") if item else None

    def set_cursor(self, repository: str | None) -> None:
        if repository is None:
            self._table.call("delete_item", TableName=self._table.name, Key=keys.retention_cursor())
        else:
            self._table.put({**keys.retention_cursor(), "after_repository": S(repository)})

    # --- what an evaluation reads, page by page -----------------------------------------

    def repositories(self, after: str | None = None) -> Iterator[str]:
        """Catalog names in order, after ``after``."""
        for item in self._table.query(
            keys.CATALOG,
            keys.REPO_PREFIX,
            after=f"{keys.REPO_PREFIX}{after}" if after is not None else None,
            projection="SK",
        ):
            yield item[keys.SK]["S"][len(keys.REPO_PREFIX) :]

    def manifests(self, repository: str) -> Iterator[dict[str, Any]]:
        """The repository's manifests: digest, media type, pushed_ms (0: none), subject.
        Not the bodies (an index's is read on its own, by the caller)."""
        for item in self._table.query(
            keys.repository_partition(repository),
            keys.MANIFEST_PREFIX,
            projection="SK, media_type, pushed_ms, subject",
        ):
            yield {
                "digest": item[keys.SK]["S"][len(keys.MANIFEST_PREFIX) :],
                "media_type": get_str(item, "media_type") or "",
                "pushed_ms": get_int(item, "pushed_ms"),
                "subject": get_str(item, "subject"),
            }

    def tags(self, repository: str) -> Iterator[tuple[str, str]]:
        """(tag, digest) of every tag of the repository."""
        for item in self._table.query(
            keys.repository_partition(repository), keys.TAG_PREFIX, projection="SK, digest"
        ):
            yield item[keys.SK]["S"][len(keys.TAG_PREFIX) :], get_str(item, "digest") or ""


def _rule_fields(item: dict) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": item[keys.SK]["S"][len(keys.RETENTION_RULE_PREFIX) :],
        "repositories": get_str(item, "repositories") or "",
        "keep_tags": [value["S"] for value in item.get("keep_tags", {}).get("L", [])],
        "created_ms": get_int(item, "created_ms"),
        "keep_last": get_int(item, "keep_last") if "keep_last" in item else None,
    }
    for name in _PERIODS:
        fields[name] = get_int(item, name) if name in item else None
    return fields
