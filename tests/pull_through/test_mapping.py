"""Name mapping: a prefixed name to the upstream repository, Docker Hub's official images,
the mirror's unprefixed names, and the names that map to nothing."""

from __future__ import annotations

import pytest
from skyport.errors import NameInvalid, NameUnknown
from skyport.pull_through.rules import CacheRule, CacheRules, normalize_upstream


class Rules:
    def __init__(self, *rules: CacheRule) -> None:
        self.rules = [rule.fields() for rule in rules]

    def list_rules(self):
        return self.rules


HUB = CacheRule("hub", "https://registry-1.docker.io", mirror=True)
GHCR = CacheRule("mirrors/ghcr", "https://ghcr.io")


@pytest.mark.parametrize(
    ("name", "repository", "upstream"),
    [
        ("hub/alpine", "hub/alpine", "library/alpine"),
        ("hub/library/alpine", "hub/library/alpine", "library/alpine"),
        ("hub/bitnami/redis", "hub/bitnami/redis", "bitnami/redis"),
        ("mirrors/ghcr/owner/tool", "mirrors/ghcr/owner/tool", "owner/tool"),
        ("mirrors/ghcr/tool", "mirrors/ghcr/tool", "tool"),  # not Docker Hub: no library/
    ],
)
def test_prefixed_names(name, repository, upstream):
    target = CacheRules(Rules(HUB, GHCR)).target(name)
    assert target is not None and (target.repository, target.upstream_name) == (repository, upstream)


def test_names_no_rule_covers():
    rules = CacheRules(Rules(HUB, GHCR))
    assert rules.target("hubx/alpine") is None
    assert rules.target("mirrors/quay/x") is None
    with pytest.raises(NameUnknown):
        rules.target("hub")
    with pytest.raises(NameUnknown):
        rules.target("mirrors/ghcr")
    for bad in ("hub/../x", "hub//x", "Hub/x", "hub/x/", "hub/" + "a" * 260, "hub/x\u0661"):
        with pytest.raises(NameInvalid):
            rules.target(bad)


def test_the_mirror():
    rules = CacheRules(Rules(HUB, GHCR))
    target = rules.mirror_target("alpine")
    assert target is not None and (target.repository, target.upstream_name) == (
        "hub/alpine",
        "library/alpine",
    )
    assert rules.mirror_target("library/alpine").repository == "hub/library/alpine"
    assert CacheRules(Rules(GHCR)).mirror_target("library/alpine") is None
    with pytest.raises(NameInvalid):
        rules.mirror_target("a" * 252)


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("docker.io", "https://registry-1.docker.io"),
        ("https://index.docker.io/", "https://registry-1.docker.io"),
        ("ghcr.io", "https://ghcr.io"),
        ("https://Quay.IO", "https://quay.io"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000"),
        ("http://localhost:5000", "http://localhost:5000"),
    ],
)
def test_upstream_urls(given, base):
    assert normalize_upstream(given, insecure=False) == base
