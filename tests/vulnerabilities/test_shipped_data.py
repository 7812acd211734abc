"""The shipped OSV data set, through the same path as deployed data: mirror -> S3 (moto) ->
OsvDatabase.from_store -> match, against inventories equal to the fabricated test images'
expected packages: exactly the expected findings, and every gap named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from machine import cannot_run
from skyport.scanning.model import Report
from skyport.vulnerabilities.database import OsvDatabase
from skyport.vulnerabilities.matching import build_report, match_inventory

from .expected import FINDINGS, PACKAGES, SKIPPED, inventory


@pytest.mark.parametrize("image", sorted(FINDINGS))
def test_each_image_gets_exactly_its_expected_findings(mirrored, image: str) -> None:
    database = OsvDatabase.from_store(mirrored)
    result = match_inventory(inventory(image), database)
    found = {(f.id, f.package): (f.severity, f.fixed_version, f.aliases) for f in result.findings}
    assert found == FINDINGS[image]
    assert [gap.reason for gap in result.skipped] == SKIPPED[image]


def test_only_the_ecosystems_an_image_needs_are_loaded(mirrored) -> None:
    database = OsvDatabase.from_store(mirrored)
    match_inventory(inventory("debian-python"), database)
    assert database.loaded() == ["Debian", "PyPI"]
    match_inventory(inventory("rocky-rpm"), database)
    assert database.loaded() == ["Debian", "PyPI"]


def test_the_report_is_sorted_most_severe_first_and_round_trips(mirrored) -> None:
    database = OsvDatabase.from_store(mirrored)
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    report = build_report("team/app", "sha256:" + "a" * 64, inventory("distroless-java-go"), database, now)
    assert report.scanned_at == "2026-12-06T12:00:00Z"
    assert report.database == "osv 2025-02-20T00:00:00Z"  # the newest record's "modified"
    assert report.packages == len(PACKAGES["distroless-java-go"][1])
    assert [(f.severity, f.id) for f in report.findings] == [
        ("CRITICAL", "GHSA-7rjr-3q55-vv33"),
        ("CRITICAL", "GHSA-jfh8-c2jp-5v3q"),
        ("HIGH", "GHSA-5ww9-j83m-q7qx"),
        ("MEDIUM", "DEBIAN-CVE-2024-0727"),
        ("UNKNOWN", "GO-2022-1059"),
        ("UNKNOWN", "GO-2023-1621"),
        ("UNKNOWN", "GO-2023-1737"),
    ]
    assert report.counts() == {"UNKNOWN": 3, "LOW": 0, "MEDIUM": 1, "HIGH": 1, "CRITICAL": 2}
    assert Report.from_dict(report.to_dict()) == report


def test_a_bucket_the_mirror_has_not_filled_says_so(store) -> None:
    database = OsvDatabase.from_store(store)
    result = match_inventory(inventory("debian-python"), database)
    assert result.findings == []
    assert [gap.reason for gap in result.skipped] == [
        "3 Debian packages: no OSV data for Debian mirrored yet, not matched",
        "3 PyPI packages: no OSV data for PyPI mirrored yet, not matched",
    ]
    assert database.version == "osv (no data)"


def test_an_export_missing_from_the_bucket_is_a_gap_not_a_clean_report(mirrored) -> None:
    from skyport.storage import keys

    mirrored.delete(keys.osv_export_object("PyPI"))
    result = match_inventory(inventory("debian-python"), OsvDatabase.from_store(mirrored))
    assert {f.package for f in result.findings} == {"openssl", "libc6"}
    assert [gap.reason for gap in result.skipped] == [
        "3 PyPI packages: no OSV data for PyPI mirrored yet, not matched"
    ]


def test_the_copied_package_lists_equal_the_scanning_suites() -> None:
    """expected.py copies tests/scanning/images.py's constants (the scanner's part owns
    them): if they drift apart, the findings above test the wrong images."""
    try:
        from scanning import images
    except ImportError as error:
        cannot_run(f"tests/scanning/images.py is not importable here: {error}")
    for name, (distro, packages) in PACKAGES.items():
        image = images.IMAGES[name]
        assert image.distro == distro
        assert {(p.name, p.version, p.purl) for p in image.packages} == set(packages)
