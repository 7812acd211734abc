"""The one DynamoDB table every index lives in (its layout: ``storage/keys.py``):
the low-level client bound to it, with the SDK's errors translated, the
attribute marshalling helpers, and the conditional-write helper.

Every invariant is a conditional write whose condition has a name, next to the
adapter that writes it (``blobs.py``, ``uploads.py``, ``manifests.py``,
``identities.py``); the one shared by several is here. No other condition is
written anywhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from .. import keys
from ..ports import StorageUnavailable

# A link (or manifest, tag, identity, grant) exists before it is changed or removed.
ITEM_EXISTS = "attribute_exists(PK)"

# DynamoDB transactions hold at most 100 actions; BatchGetItem reads at most 100 keys.
MAX_TRANSACTION_ITEMS = 100
MAX_BATCH_GET_KEYS = 100
# BatchGetItem may leave keys unread (UnprocessedKeys: throttling or its 16 MB cap);
# they are asked again this many times, with backoff, before the read is given up.
BATCH_GET_ATTEMPTS = 5
_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
}

T = TypeVar("T")


def S(value: str) -> dict[str, str]:
    return {"S": value}


def N(value: int) -> dict[str, str]:
    return {"N": str(value)}


def B(value: bytes) -> dict[str, bytes]:
    return {"B": value}


def get_str(item: dict, name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value else None


def get_int(item: dict, name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0


def get_bytes(item: dict, name: str) -> bytes | None:
    value = item.get(name)
    return bytes(value["B"]) if value else None


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


class Table:
    """The low-level client bound to one table, with errors translated."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            if error_code(error) in _THROTTLED:
                raise StorageUnavailable(f"DynamoDB {operation}: {error_code(error)}") from error
            raise
        except BotoCoreError as error:
            raise StorageUnavailable(f"DynamoDB {operation}: {error}") from error

    def get(self, key: dict, projection: str | None = None) -> dict | None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Key": key}
        if projection:
            kwargs["ProjectionExpression"] = projection
        return self.call("get_item", **kwargs).get("Item")

    def put(
        self,
        item: dict,
        condition: str | None = None,
        values: dict | None = None,
        return_old_on_failure: bool = False,
    ) -> None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": item}
        if condition:
            kwargs["ConditionExpression"] = condition
        if values:
            kwargs["ExpressionAttributeValues"] = values
        if return_old_on_failure:
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.call("put_item", **kwargs)

    def query(
        self,
        pk: str,
        sk_prefix: str,
        limit: int | None = None,
        after: str | None = None,
        projection: str | None = None,
        filter_expression: str | None = None,
        values: dict | None = None,
        consistent: bool = False,
    ) -> Iterator[dict]:
        """Items of partition ``pk`` whose SK starts with ``sk_prefix``, in SK order,
        starting after SK ``after``; stops after ``limit`` items when given."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": S(pk), ":prefix": S(sk_prefix), **(values or {})},
        }
        if consistent:
            kwargs["ConsistentRead"] = True
        if projection:
            kwargs["ProjectionExpression"] = projection
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        if after is not None:
            kwargs["ExclusiveStartKey"] = {keys.PK: S(pk), keys.SK: S(after)}
        returned = 0
        while True:
            if limit is not None and not filter_expression:
                kwargs["Limit"] = limit - returned
            page = self.call("query", **kwargs)
            for item in page.get("Items", []):
                yield item
                returned += 1
                if limit is not None and returned >= limit:
                    return
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def delete_existing(self, key: dict, condition: str = ITEM_EXISTS) -> bool:
        """Delete the item at ``key`` if it exists (ITEM_EXISTS, or the caller's named
        condition): True if this call deleted it, False if there was nothing to delete."""
        ok, _, _ = conditional(
            lambda: self.call("delete_item", TableName=self.name, Key=key, ConditionExpression=condition)
        )
        return ok

    def batch_get(self, keys_: list[dict], projection: str) -> Iterator[dict]:
        """The items of ``keys_`` (at most MAX_BATCH_GET_KEYS distinct keys) that exist,
        in no particular order. Unprocessed keys are asked again, BATCH_GET_ATTEMPTS
        times in all; past that, StorageUnavailable."""
        request: dict[str, Any] = {self.name: {"Keys": keys_, "ProjectionExpression": projection}}
        for attempt in range(BATCH_GET_ATTEMPTS):
            response = self.call("batch_get_item", RequestItems=request)
            yield from response.get("Responses", {}).get(self.name, [])
            unprocessed = response.get("UnprocessedKeys", {}).get(self.name)
            if not unprocessed or not unprocessed.get("Keys"):
                return
            request = {self.name: unprocessed}
            if attempt < BATCH_GET_ATTEMPTS - 1:
                time.sleep(random.uniform(0, 0.02 * 2**attempt))
        raise StorageUnavailable(f"DynamoDB batch_get_item: keys left unprocessed {BATCH_GET_ATTEMPTS} times")

    def transact(self, actions: list[dict], attempts: int = 6) -> None:
        """TransactWriteItems, retrying conflicts with other transactions (which
        DynamoDB reports for concurrent pushes touching the same items)."""
        for attempt in range(attempts):
            try:
                self.call("transact_write_items", TransactItems=actions)
                return
            except ClientError as error:
                if error_code(error) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons or attempt == attempts - 1:
                    error.reasons = reasons  # type: ignore[attr-defined]
                    if "ConditionalCheckFailed" not in reasons:
                        raise StorageUnavailable(f"DynamoDB transaction: {reasons}") from error
                    raise
                time.sleep(random.uniform(0, 0.02 * 2**attempt))


def conditional(fn: Callable[[], T]) -> tuple[bool, T | None, dict | None]:
    """Run a conditional write: (True, result, None) or (False, None, old item)."""
    try:
        return True, fn(), None
    except ClientError as error:
        if error_code(error) != "ConditionalCheckFailedException":
            raise
        return False, None, error.response.get("Item")
