"""Matching installed packages against OSV records: ecosystems, tricky versions, range
events, enumerated versions, and the gaps a report must name."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skyport.scanning.model import Distro, Inventory, Package
from skyport.vulnerabilities.database import OsvDatabase
from skyport.vulnerabilities.matching import match_inventory
from skyport.vulnerabilities.mirror import shipped_data
from skyport.vulnerabilities.osv import parse_record, read_records

DEBIAN_12 = Distro("debian", "12")
UBUNTU_2204 = Distro("ubuntu", "22.04")
ALPINE_318 = Distro("alpine", "3.18.4")


def advisory(
    ecosystem: str, name: str, *ranges: list[dict], versions=(), kind="ECOSYSTEM", id_="OSV-1", **extra
):
    return parse_record(
        {
            "id": id_,
            "modified": "2024-01-01T00:00:00Z",
            "summary": f"{id_} in {name}",
            "affected": [
                {
                    "package": {"ecosystem": ecosystem, "name": name},
                    "ranges": [{"type": kind, "events": events} for events in ranges],
                    "versions": list(versions),
                }
            ],
            **extra,
        }
    )


def package(purl: str, version: str) -> Package:
    return Package(purl.split("/")[-1].split("@")[0], version, purl, "somewhere", "sha256:layer")


def hits(record, purl: str, version: str, distro: Distro | None = None) -> list[tuple[str, str]]:
    result = match_inventory(
        Inventory(distro, [package(purl, version)]), OsvDatabase.from_advisories([record])
    )
    return [(finding.id, finding.fixed_version) for finding in result.findings]


FIXED_1_0 = [{"introduced": "0"}, {"fixed": "1.0"}]


@pytest.mark.parametrize(
    ("ecosystem", "purl", "distro", "events", "installed", "affected"),
    [
        # Debian: the epoch outranks everything after it.
        (
            "Debian:12",
            "pkg:deb/debian/zlib",
            DEBIAN_12,
            [{"introduced": "0"}, {"fixed": "2.5-1"}],
            "1:2.0-1",
            False,
        ),
        (
            "Debian:12",
            "pkg:deb/debian/zlib",
            DEBIAN_12,
            [{"introduced": "0"}, {"fixed": "1:1.0-1"}],
            "2.0-1",
            True,
        ),
        # Debian: "~" sorts before the end of the string: 1.0~rc1 < 1.0.
        (
            "Debian:12",
            "pkg:deb/debian/x",
            DEBIAN_12,
            [{"introduced": "0"}, {"fixed": "1.0-1"}],
            "1.0~rc1-1",
            True,
        ),
        (
            "Debian:12",
            "pkg:deb/debian/x",
            DEBIAN_12,
            [{"introduced": "0"}, {"fixed": "1.0-1~deb12u1"}],
            "1.0-1",
            False,
        ),
        # PyPI (PEP 440): pre-releases before the release, post-releases after.
        ("PyPI", "pkg:pypi/x", None, FIXED_1_0, "1.0rc1", True),
        ("PyPI", "pkg:pypi/x", None, FIXED_1_0, "1.0.post1", False),
        ("PyPI", "pkg:pypi/x", None, FIXED_1_0, "1.0.0", False),  # 1.0 == 1.0.0
        # npm (SemVer): pre-releases order by their identifiers.
        (
            "npm",
            "pkg:npm/x",
            None,
            [{"introduced": "8.0.0-alpha.0"}, {"fixed": "8.0.0-alpha.4"}],
            "8.0.0-alpha.2",
            True,
        ),
        (
            "npm",
            "pkg:npm/x",
            None,
            [{"introduced": "8.0.0-alpha.0"}, {"fixed": "8.0.0-alpha.4"}],
            "8.0.0",
            False,
        ),
        # Maven: qualifiers (rc, SNAPSHOT, beta) before the release.
        ("Maven", "pkg:maven/org.x/y", None, [{"introduced": "0"}, {"fixed": "2.15.0"}], "2.15.0-rc1", True),
        ("Maven", "pkg:maven/org.x/y", None, [{"introduced": "0"}, {"fixed": "1.0"}], "1.0-SNAPSHOT", True),
        ("Maven", "pkg:maven/org.x/y", None, [{"introduced": "2.0-beta9"}, {"fixed": "2.3.1"}], "2.0", True),
        (
            "Maven",
            "pkg:maven/org.x/y",
            None,
            [{"introduced": "2.0-beta9"}, {"fixed": "2.3.1"}],
            "2.0-alpha1",
            False,
        ),
        # Go: "v" prefix, +incompatible is build metadata (ignored), pseudo-versions.
        (
            "Go",
            "pkg:golang/example.com/m",
            None,
            [{"introduced": "0"}, {"fixed": "2.0.1"}],
            "v2.0.0+incompatible",
            True,
        ),
        (
            "Go",
            "pkg:golang/example.com/m",
            None,
            [{"introduced": "0"}, {"fixed": "2.0.0"}],
            "v2.0.0+incompatible",
            False,
        ),
        (
            "Go",
            "pkg:golang/golang.org/x/net",
            None,
            [{"introduced": "0"}, {"fixed": "0.7.0"}],
            "v0.0.0-20220722155237-a158d28d115b",
            True,
        ),
        # Alpine: -rN revisions.
        (
            "Alpine:v3.18",
            "pkg:apk/alpine/x",
            ALPINE_318,
            [{"introduced": "0"}, {"fixed": "3.1.4-r1"}],
            "3.1.4-r0",
            True,
        ),
        (
            "Alpine:v3.18",
            "pkg:apk/alpine/x",
            ALPINE_318,
            [{"introduced": "0"}, {"fixed": "3.1.4-r1"}],
            "3.1.4-r1",
            False,
        ),
        # last_affected is inclusive, limit exclusive.
        ("PyPI", "pkg:pypi/x", None, [{"introduced": "1.0"}, {"last_affected": "1.5"}], "1.5", True),
        ("PyPI", "pkg:pypi/x", None, [{"introduced": "1.0"}, {"last_affected": "1.5"}], "1.5.1", False),
        ("PyPI", "pkg:pypi/x", None, [{"introduced": "1.0"}, {"last_affected": "1.5"}], "0.9", False),
        ("PyPI", "pkg:pypi/x", None, [{"introduced": "0"}, {"limit": "2.0"}], "1.9", True),
        ("PyPI", "pkg:pypi/x", None, [{"introduced": "0"}, {"limit": "2.0"}], "2.0", False),
        # Two intervals in one range, in any order in the record.
        (
            "PyPI",
            "pkg:pypi/x",
            None,
            [{"fixed": "2.5"}, {"introduced": "2.0"}, {"introduced": "0"}, {"fixed": "1.5"}],
            "1.7",
            False,
        ),
        (
            "PyPI",
            "pkg:pypi/x",
            None,
            [{"fixed": "2.5"}, {"introduced": "2.0"}, {"introduced": "0"}, {"fixed": "1.5"}],
            "2.1",
            True,
        ),
    ],
)
def test_versions_in_ranges(ecosystem, purl, distro, events, installed, affected) -> None:
    name = {"pkg:maven/org.x/y": "org.x:y"}.get(
        purl, purl.removeprefix("pkg:golang/") if "golang" in purl else purl.split("/")[-1]
    )
    kind = "SEMVER" if ecosystem in ("npm", "Go") else "ECOSYSTEM"
    record = advisory(ecosystem, name, events, kind=kind)
    assert bool(hits(record, f"{purl}@{installed}", installed, distro)) is affected


def test_the_fixed_version_is_the_first_above_the_installed_one() -> None:
    record = advisory(
        "PyPI", "x", [{"introduced": "0"}, {"fixed": "1.5"}, {"introduced": "2.0"}, {"fixed": "2.4"}]
    )
    assert hits(record, "pkg:pypi/x@2.1", "2.1") == [("OSV-1", "2.4")]
    assert hits(record, "pkg:pypi/x@1.0", "1.0") == [("OSV-1", "1.5")]


def test_enumerated_versions_match_exactly() -> None:
    record = advisory("PyPI", "x", versions=["1.0", "1.1"])
    assert hits(record, "pkg:pypi/x@1.1", "1.1") == [("OSV-1", "")]
    assert hits(record, "pkg:pypi/x@1.2", "1.2") == []
    go = advisory("Go", "example.com/m", versions=["1.2.3"], kind="SEMVER")
    assert hits(go, "pkg:golang/example.com/m@v1.2.3", "v1.2.3") == [("OSV-1", "")]


def test_pypi_names_are_compared_as_pep_503_normalises_them() -> None:
    record = advisory("PyPI", "Foo_Bar.baz", FIXED_1_0)
    assert hits(record, "pkg:pypi/foo-bar-baz@0.5", "0.5") == [("OSV-1", "1.0")]


def test_withdrawn_records_never_match() -> None:
    record = advisory("PyPI", "x", FIXED_1_0, withdrawn="2024-02-01T00:00:00Z")
    assert hits(record, "pkg:pypi/x@0.5", "0.5") == []


def test_os_packages_are_matched_by_source_name_in_their_release() -> None:
    record = advisory("Debian:12", "glibc", [{"introduced": "0"}, {"fixed": "2.36-9+deb12u4"}])
    libc6 = "pkg:deb/debian/libc6@2.36-9?distro=debian-12&upstream=glibc"
    assert hits(record, libc6, "2.36-9", DEBIAN_12) == [("OSV-1", "2.36-9+deb12u4")]
    # The release comes from the purl's distro qualifier when the inventory has none.
    assert hits(record, libc6, "2.36-9", None) == [("OSV-1", "2.36-9+deb12u4")]
    # Another release's records do not apply.
    assert hits(record, libc6.replace("debian-12", "debian-11"), "2.36-9", Distro("debian", "11")) == []
    # Nor another ecosystem's package of the same name.
    assert hits(record, "pkg:pypi/glibc@2.36", "2.36") == []


def test_ubuntu_lts_releases_and_the_shipped_ubuntu_records() -> None:
    shipped = read_records(path.read_bytes() for path in shipped_data().glob("Ubuntu/*.json")).advisories
    database = OsvDatabase.from_advisories(shipped)
    installed = package("pkg:deb/ubuntu/openssl@3.0.2-0ubuntu1.10?distro=ubuntu-22.04", "3.0.2-0ubuntu1.10")
    result = match_inventory(Inventory(UBUNTU_2204, [installed]), database)
    assert [(f.id, f.severity, f.fixed_version) for f in result.findings] == [
        ("USN-6450-1", "MEDIUM", "3.0.2-0ubuntu1.12"),
        ("UBUNTU-CVE-2024-0727", "LOW", "3.0.2-0ubuntu1.14"),
    ]
    focal = package("pkg:deb/ubuntu/openssl@1.1.1f-1ubuntu2.20", "1.1.1f-1ubuntu2.20")
    result = match_inventory(Inventory(Distro("ubuntu", "20.04"), [focal]), database)
    assert [f.id for f in result.findings] == ["UBUNTU-CVE-2024-0727"]


def test_a_version_univers_cannot_read_gives_no_finding_and_a_reason() -> None:
    bad_record = advisory("PyPI", "x", [{"introduced": "0"}, {"fixed": "not a version!"}], id_="BAD-1")
    result = match_inventory(
        Inventory(None, [package("pkg:pypi/x@0.5", "0.5")]), OsvDatabase.from_advisories([bad_record])
    )
    assert result.findings == []
    assert [gap.reason for gap in result.skipped] == [
        "x 0.5: BAD-1 names version 'not a version!', not a valid PEP 440 version, so it was not compared"
    ]
    # An installed version univers cannot read: one line for the package, naming every
    # record left out.
    records = [advisory("PyPI", "x", FIXED_1_0), advisory("PyPI", "x", FIXED_1_0, id_="OSV-2")]
    result = match_inventory(
        Inventory(None, [package("pkg:pypi/x@what?", "what?")]), OsvDatabase.from_advisories(records)
    )
    assert result.findings == []
    assert [(gap.path, gap.reason) for gap in result.skipped] == [
        ("somewhere", "x what?: not a valid PEP 440 version, so 2 records (OSV-1, OSV-2) not compared")
    ]


def test_packages_without_an_ecosystem_are_named_once_per_kind() -> None:
    inventory = Inventory(
        Distro("linuxmint", "21"),
        [
            package("pkg:deb/linuxmint/a@1", "1"),
            package("pkg:deb/linuxmint/b@1", "1"),
            package("pkg:gem/rails@7.0.0", "7.0.0"),
            package("not a purl", "1"),
        ],
    )
    result = match_inventory(inventory, OsvDatabase.from_advisories([]))
    assert sorted(gap.reason for gap in result.skipped) == [
        "1 package (gem packages): no OSV ecosystem for them, not matched",
        "1 package (not a package URL): no OSV ecosystem for them, not matched",
        "2 packages (deb packages of linuxmint 21): no OSV ecosystem for them, not matched",
    ]


def test_aliased_records_are_one_finding_and_findings_are_sorted() -> None:
    ghsa = advisory(
        "PyPI",
        "x",
        FIXED_1_0,
        id_="GHSA-aaaa-aaaa-aaaa",
        aliases=["CVE-1"],
        database_specific={"severity": "HIGH"},
    )
    pysec = advisory("PyPI", "x", FIXED_1_0, id_="PYSEC-1", aliases=["CVE-1"])
    other = advisory(
        "PyPI", "x", FIXED_1_0, id_="GHSA-bbbb-bbbb-bbbb", database_specific={"severity": "CRITICAL"}
    )
    low = advisory("PyPI", "x", FIXED_1_0, id_="A-LOW", database_specific={"severity": "LOW"})
    database = OsvDatabase.from_advisories([pysec, low, ghsa, other])
    result = match_inventory(Inventory(None, [package("pkg:pypi/x@0.1", "0.1")]), database)
    assert [(f.id, f.severity, f.aliases) for f in result.findings] == [
        ("GHSA-bbbb-bbbb-bbbb", "CRITICAL", ()),
        ("GHSA-aaaa-aaaa-aaaa", "HIGH", ("CVE-1", "PYSEC-1")),
        ("A-LOW", "LOW", ()),
    ]


SHIPPED = OsvDatabase.from_advisories(
    read_records(path.read_bytes() for path in shipped_data().rglob("*.json")).advisories
)
PURLS = [
    ("pkg:deb/debian/openssl?distro=debian-12", DEBIAN_12),
    ("pkg:deb/ubuntu/openssl?distro=ubuntu-22.04", UBUNTU_2204),
    ("pkg:apk/alpine/busybox?distro=alpine-3.19.1", Distro("alpine", "3.19.1")),
    ("pkg:pypi/requests", None),
    ("pkg:npm/lodash", None),
    ("pkg:maven/org.apache.logging.log4j/log4j-core", None),
    ("pkg:golang/stdlib", None),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PURLS), st.text(max_size=30))
def test_any_installed_version_gives_findings_or_a_named_gap_never_an_error(purl_distro, version) -> None:
    purl, distro = purl_distro
    result = match_inventory(Inventory(distro, [package(purl, version)]), SHIPPED)
    assert all(finding.version == version for finding in result.findings)
