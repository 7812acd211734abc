"""`skyport scan|sbom|vulns REF`: scan an image now, print its SBOM, list its
vulnerabilities (issue 14; skyport/scanning/service.py, skyport/scan_results.py).

REF is ``name:tag`` or ``name@sha256:...`` (``name`` alone means ``name:latest``, as docker
reads it), on the `make run` registry in this directory (``.skyport/serve.json``), a
deployed ``--stack NAME``, or ``--table NAME --bucket NAME [--dynamodb-endpoint URL]
[--s3-endpoint URL]``. Like the admin commands they work on the table and bucket
directly, with the caller's AWS credentials: no registry token.

Exit codes:

- ``scan``: 0 when every platform image was scanned; 1 otherwise (a scan failed, another
  scan of it is running, or an error), saying which.
- ``sbom``: 0, or 1 on an error.
- ``vulns``: 0 when no finding is at or above ``--severity`` (without ``--severity``: when
  the report was read, whatever it holds); 1 when some are, so CI can gate on it
  (``skyport vulns app:1.0 --severity HIGH || exit 1``); 2 when it cannot tell: an error,
  or a platform image not scanned (yet), or whose scan failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import admin

REF_HELP = "the image: name:tag or name@sha256:<hex> (name alone: name:latest)"


class BadReference(ValueError):
    pass


def parse_ref(ref: str) -> tuple[str, str]:
    """(repository, tag or digest) of ``name:tag`` or ``name@digest``. Only the shape is
    checked here; the registry's own grammar (skyport/reference.py) judges each part."""
    if not ref or any(ch.isspace() or not ch.isprintable() for ch in ref) or len(ref) > 512:
        raise BadReference(f"invalid image reference {ref[:80]!r}: name:tag or name@sha256:<hex>")
    if "@" in ref:
        name, _, digest = ref.partition("@")
        if not name or not digest:
            raise BadReference(f"invalid image reference {ref[:80]!r}: name@sha256:<hex>")
        return name, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1 :]
        if not name or not tag:
            raise BadReference(f"invalid image reference {ref[:80]!r}: name:tag")
        return name, tag
    return ref, "latest"


def _registry(args: argparse.Namespace):
    """The Registry of the target: its table and its bucket (scans read layers and
    artifacts from S3)."""
    return admin.bucket_registry(args, "scans read the bucket too")[0]


def _counts_text(counts: dict[str, int]) -> str:
    from skyport.scanning.model import SEVERITIES

    return ", ".join(f"{level} {counts.get(level, 0)}" for level in reversed(SEVERITIES))


def _where(platform: Any) -> str:
    return f"{platform.digest}{f' ({platform.platform})' if platform.platform else ''}"


# --- skyport scan ---------------------------------------------------------------------------


def scan(args: argparse.Namespace) -> int:
    from skyport.scan_results import NOT_SCANNED

    repository, reference = parse_ref(args.ref)
    registry = _registry(args)
    # First what the reference names: NAME_UNKNOWN for a repository that does not exist,
    # SCAN_UNKNOWN for an artifact (nothing to scan), before any scan starts.
    registry.scan_results.view(repository, reference, require_scan=False)
    results = registry.scanning.scan(repository, reference, force=True)
    if not results:
        print(
            f"skyport scan: {args.ref}: nothing to scan (not a container image, or a pull-through "
            "cache repository, which is never written to)",
            file=sys.stderr,
        )
        return 1
    view = registry.scan_results.view(repository, reference, require_scan=False)
    platforms = {platform.digest: platform for platform in view.platforms}
    failed = 0
    for result in results:
        platform = platforms.get(result.digest)
        where = _where(platform) if platform is not None else result.digest
        if result.status == "scanned":
            counts = platform.report.counts() if platform and platform.report else result.counts
            print(f"{repository}@{where}: scanned: {_counts_text(counts)}")
        elif result.status == "nothing-to-scan":
            print(f"{repository}@{where}: nothing to scan: its layers hold no files")
        elif result.status == "running":
            failed += 1
            print(f"{repository}@{where}: another scan of it is running; its report will follow")
        else:
            failed += 1
            status = platform.status if platform is not None else NOT_SCANNED
            reason = result.error or "no reason given"
            print(f"{repository}@{where}: scan {result.status} ({status}): {reason}")
    return 1 if failed else 0


# --- skyport sbom ---------------------------------------------------------------------------


def sbom(args: argparse.Namespace) -> int:
    repository, reference = parse_ref(args.ref)
    digest, data = _registry(args).scan_results.sbom(repository, reference, args.platform)
    if args.output:
        with open(args.output, "wb") as out:
            out.write(data)
        print(f"SBOM of {repository}@{digest} written to {args.output} ({len(data)} bytes)", file=sys.stderr)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data if data.endswith(b"\n") else data + b"\n")
        sys.stdout.flush()
    return 0


# --- skyport vulns --------------------------------------------------------------------------


def _shown(report: Any, severity: str | None) -> list:
    """The findings to list: at or above ``severity`` (UNKNOWN never is), else all; most
    severe first, then by package and id."""
    from skyport.scanning.model import severity_rank

    findings = report.at_or_above(severity) if severity else list(report.findings)
    return sorted(findings, key=lambda f: (-severity_rank(f.severity), f.package, f.version, f.id))


SEVERITY_STYLES = {"CRITICAL": "bold red", "HIGH": "red", "MEDIUM": "yellow", "LOW": "cyan", "UNKNOWN": "dim"}


def _table(findings: list):
    from rich.table import Table

    table = Table(show_lines=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("SEVERITY", no_wrap=True)
    table.add_column("PACKAGE", no_wrap=True)
    table.add_column("INSTALLED", no_wrap=True)
    table.add_column("FIXED IN", no_wrap=True)
    table.add_column("SUMMARY", overflow="ellipsis", no_wrap=True, max_width=70)
    for finding in findings:
        table.add_row(
            finding.id,
            f"[{SEVERITY_STYLES.get(finding.severity, '')}]{finding.severity}[/]",
            finding.package,
            finding.version,
            finding.fixed_version or "-",
            finding.summary,
        )
    return table


def vulns(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from skyport.scan_policy import validate_severity

    severity = validate_severity(args.severity) if args.severity else None
    repository, reference = parse_ref(args.ref)
    view = _registry(args).scan_results.view(repository, reference)
    unknown = [platform for platform in view.platforms if platform.report is None]
    hits = 0
    if args.json:
        document = view.fields()
        for platform, fields in zip(
            view.platforms, document["manifests"] if view.is_index else [document], strict=True
        ):
            if platform.report is not None:
                shown = _shown(platform.report, severity)
                hits += len(shown) if severity else 0
                fields["report"]["findings"] = [finding.to_dict() for finding in shown]
        print(json.dumps({**document, "severity": severity}, indent=2))
    else:
        # Not a terminal (CI logs, pipes): a fixed width wide enough for the table, no colour.
        console = Console(
            file=sys.stdout, width=None if sys.stdout.isatty() else 200, highlight=False, soft_wrap=False
        )
        for platform in view.platforms:
            where = f"{repository}@{_where(platform)}"
            if platform.report is None:
                reason = f": {platform.error}" if platform.error else ""
                console.print(escape(f"{where}: no report ({platform.status}{reason})"))
                continue
            report = platform.report
            shown = _shown(report, severity)
            hits += len(shown) if severity else 0
            scope = f" at or above {severity}" if severity else ""
            title = (
                f"{where}: {len(shown)} vulnerabilities{scope} in {report.packages} packages; "
                f"all: {_counts_text(report.counts())}; scanned {report.scanned_at} ({report.database})"
            )
            # The heading on a line of its own: a table title would wrap at the table's width.
            console.print(escape(title), soft_wrap=True)
            if shown:
                console.print(_table(shown))
            if report.skipped:
                console.print(escape(f"  not read: {len(report.skipped)} (see --json: report.skipped)"))
    if unknown:
        listed = ", ".join(f"{_where(platform)} {platform.status}" for platform in unknown)
        print(f"skyport vulns: no report for {listed}: cannot tell", file=sys.stderr)
        return 2
    return 1 if hits else 0


# --- the commands ---------------------------------------------------------------------------


def _target(parser: argparse.ArgumentParser) -> None:
    admin.target_options(parser)
    parser.add_argument("--bucket", help="with --table: the bucket (S3)")
    parser.add_argument("--s3-endpoint", help="with --table: an S3 endpoint (moto, local)")


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "scan",
        help="scan an image now (again, with a new report)",
        description="Scan REF now: each platform image of an index, even if scanned before (a new "
        "report replaces the old; the SBOM stays). Prints, per platform, the findings by severity. "
        "Exit 0 when every platform image was scanned, 1 otherwise.",
    )
    p.add_argument("ref", metavar="REF", help=REF_HELP)
    _target(p)
    p.set_defaults(run=scan)
    p = commands.add_parser(
        "sbom",
        help="print an image's SBOM (CycloneDX JSON)",
        description="Print the SBOM (CycloneDX JSON) the scan of REF stored, or write it to --output.",
    )
    p.add_argument("ref", metavar="REF", help=REF_HELP)
    p.add_argument("--output", "-o", metavar="FILE", help="write it to FILE instead of stdout")
    p.add_argument("--platform", help="for an index: which platform image (linux/amd64, linux/arm/v7)")
    _target(p)
    p.set_defaults(run=sbom)
    p = commands.add_parser(
        "vulns",
        help="list an image's vulnerabilities",
        description="List the vulnerabilities the scan of REF found, most severe first, one table "
        "per platform image. Exit 0: none at or above --severity; 1: some (a CI gate); 2: cannot "
        "tell (an error, or an image not scanned yet).",
    )
    p.add_argument("ref", metavar="REF", help=REF_HELP)
    p.add_argument(
        "--severity",
        metavar="S",
        help="list only findings at or above S (LOW, MEDIUM, HIGH, CRITICAL), and exit 1 if any",
    )
    p.add_argument("--json", action="store_true", help="the scan endpoint's JSON, findings filtered")
    _target(p)
    p.set_defaults(run=vulns)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from skyport.errors import RegistryError
    from skyport.scan_policy import InvalidPolicy
    from skyport.storage.ports import StorageUnavailable

    error_exit = 2 if args.command == "vulns" else 1
    try:
        return args.run(args)
    except RegistryError as error:
        print(f"skyport {args.command}: {args.ref[:200]}: {error.message}", file=sys.stderr)
        return error_exit
    except (BadReference, InvalidPolicy, admin.TargetError, OSError) as error:
        print(f"skyport {args.command}: {error}", file=sys.stderr)
        return error_exit
    except (ClientError, BotoCoreError, StorageUnavailable) as error:
        print(f"skyport {args.command}: AWS: {error}", file=sys.stderr)
        return error_exit
