"""Hostile input against immutability: Unicode digits and odd characters in patterns and
tags, patterns built to make a matcher backtrack, the longest names and tags, the most
rules, a damaged rule item; and the rule cache (how stale, what a throttled read does)."""

from __future__ import annotations

import time

import pytest
from oci import assert_error, make_image, push_image
from skyport.immutability import (
    MAX_EXCLUSIONS,
    MAX_RULES,
    ImmutabilityRule,
    ImmutabilityRules,
    InvalidRule,
    RuleNotFound,
    validate_tag_pattern,
)
from skyport.storage import keys
from skyport.storage.dynamodb.immutability import DynamoImmutabilityStore
from skyport.storage.ports import StorageUnavailable

from .conftest import push_blobs, put

# Fifty '*a' pieces then 'b': a backtracking matcher tries every way of splitting a name
# of a's among them (a regex of it took seconds on 200 characters).
BACKTRACKER = "*" + "a*" * 50 + "b"


@pytest.mark.parametrize(
    "pattern",
    ["v\u0661", "\u0661", "v1\n", "v 1", "dev/*", ".x", "-x", "**", "a**b", "", "t" * 129, "v1\x00", "ｖ1"],
)
def test_tag_patterns_refused(pattern):
    with pytest.raises(InvalidRule, match="invalid tag pattern"):
        validate_tag_pattern(pattern)


@pytest.mark.parametrize(
    "pattern", ["latest", "dev-*", "*", "*-rc*", "_x", "V1.2.3", "t" * 128, "*" + "t" * 127]
)
def test_tag_patterns_accepted(pattern):
    assert validate_tag_pattern(pattern) == pattern


@pytest.mark.parametrize(
    "pattern", ["team/\u0661", "TEAM/*", "team/*\n", "/team", "a" * 256, "team//x", "**"]
)
def test_repository_patterns_refused(rules, pattern):
    with pytest.raises(InvalidRule, match="invalid repository pattern"):
        rules.add(pattern)
    assert rules.list_rules() == []


def test_a_backtracking_pattern_costs_nothing(client, rules):
    rules.add(BACKTRACKER[:255])
    rules.add("*", [BACKTRACKER[:128], "*" + "a*" * 63])
    repository, tag = "a" * 255, "a" * 128
    first, second = make_image(), make_image()
    started = time.monotonic()
    push_image(client, repository, first, tag)
    push_blobs(client, repository, second)
    # The first rule needs a final 'b': it covers nothing here. The second ('*') excludes
    # tags of at least 63 a's ("*a*a…*"): 128 a's stay mutable, 62 do not.
    assert put(client, repository, tag, second).status_code == 201
    push_image(client, repository, first, "a" * 62)
    assert_error(put(client, repository, "a" * 62, second), 403, "DENIED")
    assert time.monotonic() - started < 30


def test_the_longest_tag_is_protected_and_named(client, rules):
    rules.add("*")
    repository, tag = "a" * 200 + "/b" * 27, "T" * 128
    assert len(repository) == 254
    first, second = make_image(), make_image()
    push_image(client, repository, first, tag)
    push_blobs(client, repository, second)
    error = assert_error(put(client, repository, tag, second), 403, "DENIED")
    assert error["detail"]["tag"] == tag and error["detail"]["repository"] == repository


@pytest.mark.parametrize("tag", ["v\u0661", "\uff561", "v1%0A", "-v1", "." + "x" * 10, "x" * 129])
def test_unicode_and_odd_tags_are_refused_before_any_rule_applies(client, rules, storage, tag):
    rules.add("*")
    image = make_image()
    push_blobs(client, "team/app", image)
    before = storage.snapshot()
    response = put(client, "team/app", tag, image)
    assert response.status_code in (400, 404), response.text
    assert response.json()["errors"][0]["code"] in (
        "TAG_INVALID",
        "MANIFEST_INVALID",
        "NAME_INVALID",
        "NOT_FOUND",
    )
    deleted = client.delete(f"/v2/team/app/manifests/{tag}")
    assert deleted.status_code in (400, 404), deleted.text
    assert storage.snapshot() == before


def test_the_most_rules(app_client, rules, registry):
    """Once, on the app of ``registry``: the number of rules is not the transport's affair."""
    client = app_client
    store = DynamoImmutabilityStore(registry.clients.dynamodb, registry.settings.table)
    for index in range(MAX_RULES - 1):  # written as `add` writes them, without its checks
        exclude = [f"t{i}-*" for i in range(MAX_EXCLUSIONS)]
        rule = ImmutabilityRule(f"im-{index:08x}", f"other{index}/*", tuple(exclude), index)
        assert store.create_rule(rule.fields())
    last = rules.add("team/app", ["latest"])
    with pytest.raises(InvalidRule, match=f"at most {MAX_RULES}"):
        rules.add("team/*")
    assert len(rules.list_rules()) == MAX_RULES
    first, second = make_image(), make_image()
    push_image(client, "team/app", first, "v1")
    push_image(client, "team/app", first, "latest")
    push_blobs(client, "team/app", second)
    started = time.monotonic()
    assert (
        assert_error(put(client, "team/app", "v1", second), 403, "DENIED")["detail"]["rule"]["id"] == last.id
    )
    assert put(client, "team/app", "latest", second).status_code == 201
    assert time.monotonic() - started < 10
    # A rule's exclusions are capped too.
    with pytest.raises(InvalidRule, match=f"at most {MAX_EXCLUSIONS}"):
        rules.add("x/*", [f"t{i}" for i in range(MAX_EXCLUSIONS + 1)])


def test_a_damaged_rule_item_covers_nothing_and_breaks_nothing(client, registry):
    # An item with a key only (written by hand, or by a future version): no 5xx.
    registry.clients.dynamodb.put_item(
        TableName=registry.settings.table, Item=keys.immutability_rule("im-deadbeef")
    )
    image = make_image()
    push_image(client, "team/app", image, "v1")
    push_image(client, "team/app", make_image(), "v1")
    assert [rule.id for rule in registry.immutability.list_rules()] == ["im-deadbeef"]
    registry.immutability.remove("im-deadbeef")


@pytest.mark.parametrize(
    "rule_id",
    ["", "im-", "im-0123abc", "im-0123abcd0", "../x", "im-\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668"],
)
def test_malformed_rule_ids_are_not_found(rules, rule_id):
    with pytest.raises(RuleNotFound):
        rules.remove(rule_id)


class _Store:
    """A rule store that counts its reads and may fail them (throttling)."""

    def __init__(self, rules: list[dict]) -> None:
        self.rules = rules
        self.reads = 0
        self.failing = False

    def list_rules(self) -> list[dict]:
        self.reads += 1
        if self.failing:
            raise StorageUnavailable("DynamoDB query: ThrottlingException")
        return list(self.rules)

    def create_rule(self, fields: dict) -> bool:
        self.rules.append(fields)
        return True

    def delete_rule(self, rule_id: str) -> bool:
        return True


def test_the_cache_is_read_once_per_period_and_a_failed_read_keeps_the_known_rules():
    rule = ImmutabilityRule("im-0123abcd", "team/*", ("latest",), 1)
    store = _Store([rule.fields()])
    now = [1000.0]
    cached = ImmutabilityRules(store, cache_seconds=30, clock=lambda: now[0])
    for _ in range(100):
        assert cached.covering("team/app", "v1") == rule
        assert cached.covering("team/app", "latest") is None
    assert store.reads == 1
    # A rule added elsewhere is seen once the period is over, not before.
    store.rules.append(ImmutabilityRule("im-1123abcd", "other/*", (), 2).fields())
    now[0] += 29
    assert cached.covering("other/app", "v1") is None
    now[0] += 2
    assert cached.covering("other/app", "v1").id == "im-1123abcd"
    assert store.reads == 2
    # Throttled: the rules known are kept (enforcement does not lapse), and the read is
    # tried again a few seconds later, not on every request.
    store.failing = True
    now[0] += 31
    assert cached.covering("team/app", "v1") == rule
    assert store.reads == 3
    for _ in range(10):
        assert cached.covering("team/app", "v1") == rule
    assert store.reads == 3
    now[0] += 6
    store.failing = False
    assert cached.covering("team/app", "v1") == rule
    assert store.reads == 4


def test_a_failed_first_read_is_unavailable_not_a_free_pass():
    store = _Store([])
    store.failing = True
    with pytest.raises(StorageUnavailable):
        ImmutabilityRules(store).covering("team/app", "v1")


def _reference_match(pattern: str, name: str) -> bool:
    """'*' matching any run of characters, by dynamic programming over both strings."""
    matches = [True] + [False] * len(name)  # pattern prefix so far vs every name prefix
    for char in pattern:
        if char == "*":
            for j in range(1, len(name) + 1):
                matches[j] = matches[j] or matches[j - 1]
        else:
            matches = [False] + [matches[j] and name[j] == char for j in range(len(name))]
    return matches[-1]


def test_the_shared_matcher_agrees_with_a_reference_and_stays_linear():
    import random

    from skyport.auth.policy import pattern_matches

    rng = random.Random(12)
    for _ in range(20_000):
        pattern = "".join(rng.choice("ab*/") for _ in range(rng.randint(0, 8)))
        name = "".join(rng.choice("ab/") for _ in range(rng.randint(0, 10)))
        assert pattern_matches(pattern, name) == _reference_match(pattern, name), (pattern, name)
    started = time.monotonic()
    for _ in range(1000):
        assert not pattern_matches("*" + "a*" * 120 + "b", "a" * 255)
    assert time.monotonic() - started < 5
