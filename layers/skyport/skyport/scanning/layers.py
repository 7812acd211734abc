"""Reading an image's layers as streams (issue 14): what a layer is to the scanner, the limits
one scan keeps to, and the walk over one layer's tar entries.

A layer is read once, front to back: its compression is sniffed from its first bytes (the
media type is only a hint, and a wrong one must not break a scan), inflated incrementally and
walked as a tar stream (``tarfile`` mode ``r|``). Nothing holds a whole layer, in memory or on
disk; every expanded byte is counted against ``ScanLimits`` as it is produced, so a gzip or
zstd bomb stops at the limit with a reason, not with the function out of memory.

Paths are untrusted: an absolute path, a ``..`` component or a NUL is never used as a path
(the entry is reported and passed over), and links are never followed (see ``image.py``).
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

GiB = 1 << 30
MiB = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 256 * 1024  # compressed bytes read from the store at a time
# The biggest PAX or GNU long-name header tarfile may read into memory: real ones hold a
# few paths and attributes; a hostile one of gigabytes would otherwise be read whole.
MAX_EXTENDED_HEADER = 1 * MiB
# How much of the expanded stream to remember, to look at the block where tarfile stopped
# (tarfile reads 10 KiB records ahead of the header it parses).
TAIL = 64 * 1024


@dataclass(frozen=True)
class LayerSource:
    """One layer of an image, in manifest order: ``open()`` gives a fresh stream of its stored
    (compressed) bytes, such as S3 ``get_object(...)["Body"]``."""

    digest: str
    media_type: str
    size: int
    open: Callable[[], BinaryIO]


@dataclass(frozen=True)
class ScanLimits:
    """What one scan may read. The defaults suit a 900 s, 2 GiB Lambda: a scan streams, so
    memory holds one identifying file (or one jar, plus one jar nested in it) at a time,
    and time is what bounds the bytes (Python inflates gzip at roughly 100-300 MB/s)."""

    max_layer_bytes: int = 10 * GiB  # stored (compressed) size of one layer
    max_layer_expanded_bytes: int = 32 * GiB  # expanded bytes of one layer: a gzip bomb stops here
    max_expanded_bytes: int = 64 * GiB  # expanded bytes of all layers of one scan
    max_file_bytes: int = 64 * MiB  # one identifying file (dpkg status, METADATA, rpmdb.sqlite)
    max_jar_bytes: int = 256 * MiB  # one jar/war/ear opened in memory (and one nested jar in it)
    # Packages listed in all: real images list a few thousand; each costs memory here and
    # in the SBOM, so a layer of a million tiny package.json files stops the scan instead.
    max_packages: int = 50_000
    deadline: float | None = None  # a time.monotonic() value: past it, the rest is Skipped


class LayerUnreadable(Exception):
    """This layer cannot be read on; the reason is for a person (it goes into a Skipped)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ScanStopped(LayerUnreadable):
    """The scan as a whole may read no more: its expanded-byte budget or its deadline."""


class _StoreFailed(Exception):
    """Carries an error of the store's stream (S3 reset the connection, the object went away)
    past the handlers for what a layer holds: it is not a Skipped, and ``walk_layer`` raises
    it as the stream raised it, for the caller to retry the scan."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def describe_bytes(count: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:g} {unit}"
    return f"{count} bytes"


class Budget:
    """The expanded bytes and the time one scan has left, shared by its layers."""

    def __init__(self, limits: ScanLimits) -> None:
        self.limits = limits
        self.expanded = 0
        self.layer_expanded = 0
        self.packages = 0

    def start_layer(self) -> None:
        self.layer_expanded = 0
        self.check_deadline()

    def check_deadline(self) -> None:
        if self.limits.deadline is not None and time.monotonic() > self.limits.deadline:
            raise ScanStopped("the scan ran out of time (its deadline passed)")

    def list_packages(self, count: int) -> None:
        """Count packages found (a later layer may delete them: they were read all the same)."""
        self.packages += count
        if self.packages > self.limits.max_packages:
            most = self.limits.max_packages
            raise ScanStopped(f"the image lists more than {most} packages, the most one scan lists")

    def spend(self, count: int) -> None:
        self.expanded += count
        self.layer_expanded += count
        if self.layer_expanded > self.limits.max_layer_expanded_bytes:
            raise LayerUnreadable(
                f"layer expands to more than {describe_bytes(self.limits.max_layer_expanded_bytes)}, "
                "the most one layer may (a compression bomb?); the rest of it was not read"
            )
        if self.expanded > self.limits.max_expanded_bytes:
            raise ScanStopped(
                f"the scan read {describe_bytes(self.limits.max_expanded_bytes)} of expanded layers, "
                "the most one scan reads"
            )
        self.check_deadline()


class _Stored(io.RawIOBase):
    """The layer's stored bytes, counted against the layer's stored-size limit (the size a
    manifest declares may lie). The first bytes, read to sniff the compression, are given
    again first."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        self._source, self._limit, self.count, self._head = source, limit, 0, b""

    def readable(self) -> bool:
        return True

    def head(self, count: int) -> bytes:
        """The first ``count`` bytes (fewer if the layer is shorter), to sniff."""
        head = b""
        while len(head) < count and (data := self._read_source(count - len(head))):
            head += data
        self._head = head
        return head

    def _read_source(self, size: int) -> bytes:
        try:
            data = self._source.read(size)
        except Exception as error:  # noqa: BLE001 - whatever the store's client raises
            raise _StoreFailed(error) from error
        self.count += len(data)
        if self.count > self._limit:
            most = describe_bytes(self._limit)
            raise LayerUnreadable(f"layer is larger than {most}, the most one scan reads")
        return data

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._read_source(CHUNK if size is None or size < 0 else min(size, CHUNK))

    def readinto(self, buffer) -> int:  # for zstandard's stream_reader
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Inflated(io.RawIOBase):
    """gzip (RFC 1952) inflated incrementally, members one after another (a layer may be
    several concatenated gzip members). ``max_length`` keeps each step's output bounded, so
    one small compressed chunk of a bomb never becomes gigabytes at once."""

    def __init__(self, stored: _Stored) -> None:
        self._stored = stored
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = len(buffer)
        while True:
            if self._inflater.unconsumed_tail:
                data = self._inflater.decompress(self._inflater.unconsumed_tail, want)
            elif self._inflater.eof:
                rest = self._inflater.unused_data or self._stored.read(CHUNK)
                if not rest.strip(b"\0"):  # the end (some writers pad with zeros)
                    return 0
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                data = self._inflater.decompress(rest, want)
            else:
                chunk = self._stored.read(CHUNK)
                if not chunk:
                    raise LayerUnreadable("gzip stream ends before its end (truncated)")
                data = self._inflater.decompress(chunk, want)
            if data:
                buffer[: len(data)] = data
                return len(data)


class _Counted(io.RawIOBase):
    """The expanded tar stream: every byte counted against the budget as it is produced; the
    last bytes kept, to look at the block where tarfile stopped."""

    def __init__(self, expanded: BinaryIO, budget: Budget) -> None:
        self._expanded, self._budget = expanded, budget
        self.position = 0
        self.tail = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._expanded.readinto(buffer)
        if count:
            self._budget.spend(count)
            self.position += count
            self.tail += buffer[:count]
            if len(self.tail) > 2 * TAIL:
                del self.tail[:-TAIL]
        return count

    def block_at(self, offset: int) -> bytes | None:
        """The 512 bytes at ``offset`` of the expanded stream if still remembered."""
        start = offset - (self.position - len(self.tail))
        if start < 0:
            return None
        return bytes(self.tail[start : start + tarfile.BLOCKSIZE])


class _BoundedTarInfo(tarfile.TarInfo):
    # tarfile reads a PAX or GNU long-name header's body whole into memory; refuse one
    # bigger than any real one rather than let a hostile layer pick the size.
    def _proc_member(self, tarfile_):
        extended = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE)
        if self.type in extended and self.size > MAX_EXTENDED_HEADER:
            raise LayerUnreadable(
                f"a tar extended header of {describe_bytes(self.size)} (more than "
                f"{describe_bytes(MAX_EXTENDED_HEADER)}); the rest of the layer was not read"
            )
        return super()._proc_member(tarfile_)


def sniff(stored_head: bytes) -> str:
    """The layer's compression from its first bytes: gzip, zstd or tar."""
    if stored_head.startswith(GZIP_MAGIC):
        return "gzip"
    if stored_head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "tar"


@dataclass(frozen=True)
class Entry:
    """One tar entry of a layer, its path normalised (no leading ``/`` or ``./``)."""

    path: str
    member: tarfile.TarInfo
    archive: tarfile.TarFile

    def open(self) -> BinaryIO:
        """The entry's content, to read before the walk moves on (it is a stream)."""
        stream = self.archive.extractfile(self.member)
        assert stream is not None  # only called for regular files
        return stream


def normalise(name: str) -> tuple[str, str]:
    """(path, "") for a usable tar name, else ("", why it is not used)."""
    if "\0" in name:
        return "", "the path holds a NUL byte"
    trimmed = name[2:] if name.startswith("./") else name
    if trimmed.startswith("/"):
        return "", "an absolute path (layer paths are relative to the image root)"
    if ".." in trimmed.split("/"):
        return "", "a path with a '..' component"
    path = posixpath.normpath(trimmed) if trimmed else "."
    return ("", "") if path == "." else (path, "")


def link_target(path: str, member: tarfile.TarInfo) -> tuple[str, str]:
    """Where a link points, as a path from the image root, or ("", why it leaves the root).
    A symlink's target is relative to its directory (an absolute one to the image root, as
    a container sees it); a hard link's is a path in the layer."""
    target = member.linkname
    if "\0" in target:
        return "", "the link target holds a NUL byte"
    if member.issym() and not target.startswith("/"):
        target = posixpath.join(posixpath.dirname(path), target)
    parts: list[str] = []
    for part in target.lstrip("/").split("/"):
        if part == "..":
            if not parts:
                return "", f"the link target {member.linkname!r} leaves the image root"
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts), ""


def read_layer(layer: LayerSource, budget: Budget, visit: Callable[[Entry | tuple[str, str]], None]) -> None:
    """Call ``visit`` with each entry of one layer in stream order: an :class:`Entry` (whose
    content ``visit`` may read then, and only then), or (name, why it is not used) for an
    unusable path. Raises :class:`LayerUnreadable` when the layer cannot be read on (corrupt
    compression or tar, a limit reached), whether the walk or ``visit``'s read found it;
    what was visited before stands. An error of the stored stream itself is raised as the
    stream raised it: it is not the layer's fault, and a retry may not meet it."""
    limits = budget.limits
    if layer.size > limits.max_layer_bytes:
        raise LayerUnreadable(
            f"layer is {describe_bytes(layer.size)}, more than {describe_bytes(limits.max_layer_bytes)}, "
            "the most one scan reads"
        )
    budget.start_layer()
    source = layer.open()
    try:
        stored = _Stored(source, limits.max_layer_bytes)
        compression = sniff(stored.head(len(ZSTD_MAGIC)))
        if compression == "gzip":
            expanded: BinaryIO = _Inflated(stored)
        elif compression == "zstd":
            decompressor = zstandard.ZstdDecompressor()
            expanded = decompressor.stream_reader(stored, read_size=CHUNK, read_across_frames=True)
        else:
            expanded = stored
        counted = _Counted(expanded, budget)
        for entry in _walk_tar(counted):
            visit(entry)
    except _StoreFailed as failed:
        raise failed.error from None
    except LayerUnreadable:
        raise
    except zlib.error as error:
        raise LayerUnreadable(f"corrupt gzip stream: {error}") from None
    except zstandard.ZstdError as error:
        raise LayerUnreadable(f"corrupt zstd stream: {error}") from None
    except (tarfile.TarError, EOFError) as error:
        if str(error).startswith("zlib error: "):  # tarfile's own wrapping of zlib.error
            raise LayerUnreadable(f"corrupt gzip stream: {str(error)[len('zlib error: ') :]}") from None
        raise LayerUnreadable(f"corrupt or truncated tar stream: {error}") from None
    except (OSError, ValueError, UnicodeError) as error:
        raise LayerUnreadable(f"unreadable layer: {type(error).__name__}: {error}") from None
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _walk_tar(counted: _Counted) -> Iterator[Entry | tuple[str, str]]:
    archive = tarfile.open(fileobj=counted, mode="r|", tarinfo=_BoundedTarInfo)
    while True:
        member = archive.next()
        # A stream-mode TarFile keeps every member it read; a layer may hold millions.
        archive.members.clear()
        if member is None:
            break
        path, problem = normalise(member.name)
        if problem:
            yield member.name, problem
        elif path:
            yield Entry(path, member, archive)
    # tarfile ends quietly at a header it cannot parse, or at the end of the data, as it
    # does at the end-of-archive blocks: tell a truncated or corrupt layer from a whole one.
    block = counted.block_at(archive.offset)
    if block is not None and len(block) < tarfile.BLOCKSIZE:
        raise LayerUnreadable("tar stream ends without its end-of-archive blocks (truncated)")
    if block is not None and block.strip(b"\0"):
        offset = archive.offset
        raise LayerUnreadable(f"invalid tar header at offset {offset}; the rest of the layer was not read")
    # Read to the end of the stream: the padding after the tar, and the gzip trailer, whose
    # CRC is what tells a layer corrupted inside a file's content from a sound one.
    while counted.read(CHUNK):
        pass
