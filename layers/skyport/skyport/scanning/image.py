"""Scanning an image (issue 14): its layers, in order, into an :class:`Inventory`.

Each layer is streamed once (``layers.read_layer``); only files that identify software are
read (``catalogers``), each into a small :class:`Found` kept by path, so what a later layer
does applies to it as the image-spec's layer changesets say ("layer.md", Changeset and
Whiteouts): a file at the same path replaces it, ``.wh.<name>`` deletes ``<name>`` and
everything under it, ``.wh..wh..opq`` hides everything lower layers put in its directory.
A layer's whiteouts apply to the layers below it only, so they are applied when the layer
ends, before its own files are added.

Links are never followed. A link named like an identifying file is reported (its content is
not read through it), unless it points inside the image to another identifying path, which
is read under its own name (Debian's ``etc/os-release -> ../usr/lib/os-release``). A link
whose target leaves the root is always reported.

Nothing a layer holds makes a scan fail: what cannot be read is a :class:`Skipped` with the
reason, and the other layers are still read, until the scan's own budget (expanded bytes,
deadline) is spent.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from packageurl import PackageURL

from skyport.scanning import catalogers as catalog
from skyport.scanning.catalogers import NOTHING, Candidate, Found, golang
from skyport.scanning.layers import (
    Budget,
    Entry,
    LayerSource,
    LayerUnreadable,
    ScanLimits,
    ScanStopped,
    describe_bytes,
    link_target,
    read_layer,
)
from skyport.scanning.model import Distro, Inventory, Package, Skipped

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OS_RELEASE_ORDER = ("etc/os-release", "usr/lib/os-release")  # os-release(5): the first wins
# An OS package's purl namespace when the image has no os-release.
DEFAULT_NAMESPACE = {"deb": "debian", "apk": "alpine", "rpm": "redhat"}
MAX_GAPS_PER_LAYER = 100  # a hostile layer must not make the report its own size
MIN_BINARY = 4096  # smaller than any Go binary
DEFAULT_LIMITS = ScanLimits()


@dataclass(frozen=True)
class Kept:
    layer: str
    found: Found


SHADOWED = NOTHING  # a path a later layer replaced with something that identifies nothing


class _Gaps:
    """A layer's Skipped records, capped."""

    def __init__(self, layer: str, into: list[Skipped]) -> None:
        self.layer, self.into, self.count = layer, into, 0

    def add(self, path: str, reason: str) -> None:
        self.count += 1
        if self.count <= MAX_GAPS_PER_LAYER:
            self.into.append(Skipped(self.layer, path, reason))

    def whole_layer(self, reason: str) -> None:
        self.into.append(Skipped(self.layer, "", reason))

    def close(self) -> None:
        if self.count > MAX_GAPS_PER_LAYER:
            self.whole_layer(f"{self.count - MAX_GAPS_PER_LAYER} more paths not read (not listed)")


class _LayerChanges:
    """What one layer does to the image: its identifying files, and its whiteouts."""

    def __init__(self) -> None:
        self.files: dict[str, Kept] = {}
        self.deleted: list[str] = []
        self.opaque: list[str] = []

    def apply_to(self, kept: dict[str, Kept]) -> None:
        prefixes = tuple(directory + "/" for directory in [*self.opaque, *self.deleted])
        exact = set(self.deleted)
        if "/" in prefixes:  # an opaque whiteout at the image root
            kept.clear()
        elif prefixes:
            for path in [path for path in kept if path in exact or path.startswith(prefixes)]:
                del kept[path]
        kept.update(self.files)


def _read_entry(entry: Entry, digest: str, budget: Budget, kept: dict[str, Kept], changes: _LayerChanges,
                gaps: _Gaps) -> None:  # fmt: skip
    limits = budget.limits
    path, member = entry.path, entry.member
    directory, name = posixpath.split(path)
    if name == OPAQUE:
        changes.opaque.append(directory)
        return
    if name.startswith(WHITEOUT + WHITEOUT):
        return  # other AUFS metadata (.wh..wh.plnk, ...): not part of the image
    if name.startswith(WHITEOUT):
        changes.deleted.append(posixpath.join(directory, name[len(WHITEOUT) :]))
        return
    cataloger = catalog.cataloger_for(path)
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        target, problem = link_target(path, member)
        if problem:
            gaps.add(path, f"{kind} not followed: {problem}")
        elif cataloger is not None and catalog.cataloger_for(target) is None:
            reason = f"a {kind} to {member.linkname!r}, named like a {cataloger.name} file: not followed"
            gaps.add(path, reason)
    elif member.isreg() and cataloger is not None:
        bound = limits.max_jar_bytes if cataloger.large else limits.max_file_bytes
        if member.size > bound:
            size, most = describe_bytes(member.size), describe_bytes(bound)
            gaps.add(path, f"{size}, more than the {most} one {cataloger.name} file may have: not read")
        else:
            found = _catalog(cataloger, path, entry.open().read(bound + 1), limits, gaps)
            budget.list_packages(len(found.candidates))
            changes.files[path] = Kept(digest, found)
    elif member.isreg() and member.size >= MIN_BINARY:
        stream = entry.open()
        head = stream.read(golang.SNIFF_BYTES)
        if golang.is_executable(head):
            found = golang.read_stream(path, stream, head)
            for gap_path, reason in found.gaps:
                gaps.add(gap_path, reason)
            if found.candidates:
                budget.list_packages(len(found.candidates))
                changes.files[path] = Kept(digest, found)
    if path not in changes.files and path in kept:
        changes.files[path] = Kept(digest, SHADOWED)


def _visit(digest: str, budget: Budget, kept: dict[str, Kept], changes: _LayerChanges, gaps: _Gaps,
           entry: Entry | tuple[str, str]) -> None:  # fmt: skip
    if isinstance(entry, Entry):
        _read_entry(entry, digest, budget, kept, changes, gaps)
    else:
        gaps.add(*entry)


def _catalog(cataloger: catalog.Cataloger, path: str, data: bytes, limits: ScanLimits, gaps: _Gaps) -> Found:
    try:
        found = cataloger.read(path, data, limits.max_jar_bytes)
    except Exception as error:  # noqa: BLE001 - one file's content must not fail the scan
        gaps.add(path, f"{cataloger.name} file could not be parsed: {type(error).__name__}")
        return NOTHING
    for gap_path, reason in found.gaps:
        gaps.add(gap_path or path, reason)
    return found


def _purl(candidate: Candidate, distro: Distro | None) -> str:
    namespace, qualifiers = candidate.namespace, dict(candidate.qualifiers)
    if candidate.os_package:
        if distro is not None:
            namespace = distro.id
            qualifiers["distro"] = f"{distro.id}-{distro.version_id}" if distro.version_id else distro.id
        else:
            namespace = DEFAULT_NAMESPACE.get(candidate.purl_type)
    return PackageURL(
        candidate.purl_type, namespace, candidate.purl_name, candidate.purl_version, qualifiers or None
    ).to_string()


def _inventory(kept: dict[str, Kept], skipped: list[Skipped]) -> Inventory:
    distro = next(
        (kept[path].found.distro for path in OS_RELEASE_ORDER if path in kept and kept[path].found.distro),
        None,
    )
    packages = []
    for path, held in kept.items():
        for candidate in held.found.candidates:
            location = candidate.location or path
            try:
                purl = _purl(candidate, distro)
            except ValueError as error:  # an empty name or version: the file said so
                reason = f"no valid purl for {candidate.name!r}: {error}"
                skipped.append(Skipped(held.layer, location, reason))
                continue
            packages.append(
                Package(candidate.name, candidate.version, purl, location, held.layer, candidate.licenses)
            )
    packages.sort(key=lambda package: (package.purl, package.location))
    return Inventory(distro=distro, packages=packages, skipped=skipped)


def scan_image(layers: Sequence[LayerSource], limits: ScanLimits = DEFAULT_LIMITS) -> Inventory:
    """What software the image made of ``layers`` (manifest order, base first) holds, and
    what the scan could not read. Never raises for anything a layer holds."""
    budget = Budget(limits)
    kept: dict[str, Kept] = {}
    skipped: list[Skipped] = []
    stopped = ""
    entries = 0

    def visit(digest: str, changes: _LayerChanges, gaps: _Gaps, entry: Entry | tuple[str, str]) -> None:
        nonlocal entries
        entries += isinstance(entry, Entry)
        _visit(digest, budget, kept, changes, gaps, entry)

    for layer in layers:
        gaps = _Gaps(layer.digest, skipped)
        if stopped:
            gaps.whole_layer(f"not read: {stopped}")
            continue
        changes = _LayerChanges()
        try:
            read_layer(layer, budget, partial(visit, layer.digest, changes, gaps))
        except ScanStopped as stop:
            stopped = stop.reason
            gaps.whole_layer(stop.reason)
        except LayerUnreadable as error:
            gaps.whole_layer(error.reason)
        # What was read before a layer stopped stands: its files and whiteouts are real.
        changes.apply_to(kept)
        gaps.close()
    inventory = _inventory(kept, skipped)
    inventory.entries = entries
    return inventory
