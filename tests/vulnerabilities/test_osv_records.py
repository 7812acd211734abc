"""OSV records read as untrusted input, and the severity a record gives."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skyport.vulnerabilities.osv import (
    MAX_RECORD_BYTES,
    MalformedRecord,
    parse_json,
    parse_record,
    read_records,
)


def record(**fields) -> dict:
    base = {
        "id": "GHSA-aaaa-bbbb-cccc",
        "modified": "2024-01-01T00:00:00Z",
        "summary": "a vulnerability",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "example"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}],
            }
        ],
    }
    base.update(fields)
    return base


def raw(data) -> bytes:
    return json.dumps(data).encode()


MALFORMED = [
    b"not json",
    b"[]",
    b'"a string"',
    raw(record(id="")),
    raw(record(id=7)),
    raw(record(id="GHSA-\x1b[31m-red")),  # a terminal escape
    raw(record(id="x" * 200)),
    raw(record(aliases="CVE-1")),
    raw(record(aliases=[1])),
    raw(record(affected={"package": {}})),
    raw(record(affected=[{"package": {"ecosystem": "PyPI"}}])),
    raw(record(affected=[{"package": {"ecosystem": "PyPI", "name": 3}}])),
    raw(
        record(affected=[{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [{"type": "ECOSYSTEM"}]}])
    ),
    raw(record(affected=[{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": "no"}])),
    raw(record(affected=[{"package": {"ecosystem": "PyPI", "name": "x"}, "versions": [1, 2]}])),
    # An event with two kinds, an event with none, a range without an introduced event.
    raw(
        record(
            affected=[
                {
                    "package": {"ecosystem": "PyPI", "name": "x"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}],
                }
            ]
        )
    ),
    raw(
        record(
            affected=[
                {
                    "package": {"ecosystem": "PyPI", "name": "x"},
                    "ranges": [{"type": "SEMVER", "events": [{}]}],
                }
            ]
        )
    ),
    raw(
        record(
            affected=[
                {
                    "package": {"ecosystem": "PyPI", "name": "x"},
                    "ranges": [{"type": "SEMVER", "events": [{"fixed": "1.0"}]}],
                }
            ]
        )
    ),
    raw(record(severity=[{"type": "CVSS_V3", "score": 9.8}])),
    raw(record(severity="HIGH")),
    raw(record(withdrawn=True)),
    raw(record(database_specific=["severity", "HIGH"])),
    b"[" * 100_000 + b"]" * 100_000,  # nested beyond the parser's recursion limit
    b" " * (MAX_RECORD_BYTES + 1),
]


@pytest.mark.parametrize("data", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_record_raises_malformed_record_only(data: bytes) -> None:
    with pytest.raises(MalformedRecord):
        parse_json(data)


def test_reading_skips_and_counts_malformed_and_withdrawn_records() -> None:
    good = raw(record())
    withdrawn = raw(record(id="GHSA-wwww-wwww-wwww", withdrawn="2024-02-01T00:00:00Z"))
    result = read_records([*MALFORMED, good, withdrawn])
    assert [advisory.id for advisory in result.advisories] == ["GHSA-aaaa-bbbb-cccc"]
    assert result.malformed == len(MALFORMED)
    assert result.withdrawn == 1


def test_git_ranges_are_ignored_and_the_summary_falls_back_to_the_details_first_line() -> None:
    advisory = parse_record(
        record(
            summary="",
            details="First line.\nSecond line.",
            aliases=["CVE-2024-1", "GHSA-aaaa-bbbb-cccc"],
            affected=[
                {
                    "package": {
                        "ecosystem": "Go",
                        "name": "example.com/x",
                        "purl": "pkg:golang/example.com/x",
                    },
                    "ranges": [
                        {"type": "GIT", "repo": "https://x", "events": [{"introduced": "abc"}]},
                        {"type": "SEMVER", "events": [{"introduced": "0"}, {"last_affected": "1.2.3"}]},
                    ],
                }
            ],
        )
    )
    assert advisory.summary == "First line."
    assert advisory.aliases == ("CVE-2024-1",)  # never itself
    (affected,) = advisory.affected
    assert [r.type for r in affected.ranges] == ["SEMVER"]


@pytest.mark.parametrize(
    ("severity", "database_specific", "expected"),
    [
        # CVSS v3.1 bands (spec section 5): 9.8 CRITICAL, 7.5 HIGH, 5.5 MEDIUM, 3.1 LOW.
        ([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}], {}, "CRITICAL"),
        ([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}], {}, "HIGH"),
        ([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:H"}], {}, "MEDIUM"),
        ([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N"}], {}, "LOW"),
        # 0.0 ("None" in the spec) is LOW, not UNKNOWN: a score is known.
        ([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"}], {}, "LOW"),
        # v4 preferred over v3 (8.6 HIGH in v3, 9.3 CRITICAL in v4).
        (
            [
                {"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:C/C:H/I:H/A:H"},
                {
                    "type": "CVSS_V4",
                    "score": "CVSS:4.0/AV:L/AC:L/AT:N/PR:N/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H",
                },
            ],
            {},
            "CRITICAL",
        ),
        # CVSS v2 has no CRITICAL: 10.0 is HIGH.
        ([{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:C/I:C/A:C"}], {}, "HIGH"),
        # A vector the library cannot read: the database's label next.
        ([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/garbage"}], {"severity": "MODERATE"}, "MEDIUM"),
        ([], {"severity": "MODERATE"}, "MEDIUM"),
        ([], {"severity": "CRITICAL"}, "CRITICAL"),
        ([{"type": "Ubuntu", "score": "negligible"}], {}, "LOW"),
        ([{"type": "Ubuntu", "score": "high"}], {}, "HIGH"),
        ([], {"severity": "whatever"}, "UNKNOWN"),
        ([], {}, "UNKNOWN"),
    ],
)
def test_severity(severity: list, database_specific: dict, expected: str) -> None:
    advisory = parse_record(record(severity=severity, database_specific=database_specific))
    assert advisory.severity.level == expected
    assert (advisory.severity.score == "") == (expected == "UNKNOWN")


def test_a_severity_inside_affected_wins_for_that_package() -> None:
    advisory = parse_record(
        record(
            database_specific={"severity": "LOW"},
            affected=[
                {
                    "package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
                    "ecosystem_specific": {"ubuntu_priority": "high"},
                }
            ],
        )
    )
    assert advisory.severity.level == "LOW"
    assert advisory.affected[0].severity.level == "HIGH"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
# Records shaped like OSV's, with any value in any field: the loader's contract is "an
# Advisory or MalformedRecord", never another exception.
record_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=10) | json_values,
        "modified": st.just("2024-01-01T00:00:00Z") | json_values,
        "aliases": st.lists(st.text(max_size=8), max_size=3) | json_values,
        "summary": json_values,
        "details": json_values,
        "withdrawn": json_values,
        "severity": st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["CVSS_V2", "CVSS_V3", "CVSS_V4", "Ubuntu"]) | json_values,
                    "score": st.text(max_size=60) | json_values,
                }
            ),
            max_size=2,
        )
        | json_values,
        "database_specific": st.dictionaries(st.sampled_from(["severity", "urgency"]), json_values)
        | json_values,
        "affected": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "package": st.fixed_dictionaries(
                        {},
                        optional={
                            "ecosystem": st.sampled_from(["PyPI", "Debian:12"]) | json_values,
                            "name": st.text(max_size=8) | json_values,
                        },
                    )
                    | json_values,
                    "ranges": st.lists(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "type": st.sampled_from(["ECOSYSTEM", "SEMVER", "GIT"]) | json_values,
                                "events": st.lists(
                                    st.dictionaries(
                                        st.sampled_from(["introduced", "fixed", "last_affected", "limit"]),
                                        st.text(max_size=8) | json_values,
                                        max_size=2,
                                    )
                                    | json_values,
                                    max_size=3,
                                )
                                | json_values,
                            },
                        )
                        | json_values,
                        max_size=2,
                    )
                    | json_values,
                    "versions": st.lists(st.text(max_size=6), max_size=3) | json_values,
                },
            )
            | json_values,
            max_size=2,
        )
        | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_like)
def test_any_record_is_an_advisory_or_malformed_never_an_error(data) -> None:
    try:
        parse_json(json.dumps(data).encode())
    except MalformedRecord:
        pass


def test_aliases_and_summaries_are_made_printable() -> None:
    advisory = parse_record(record(aliases=["CVE-2024-1", "bad alias\x1b[2J", ""], summary="a\x1b[2Jb\nc"))
    assert advisory.aliases == ("CVE-2024-1",)
    assert advisory.summary == "a [2Jb c"
