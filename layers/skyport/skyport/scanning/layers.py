"""Reading an image's layers as streams (issue 14): what a layer is to the scanner, and the
limits one scan keeps to.

A layer is read once, front to back: its compression is sniffed from its first bytes
(the media type is only a hint, and a wrong one must not break a scan), decompressed
incrementally and walked as a tar stream. Nothing holds a whole layer, in memory or on
disk; only the files that identify software are read, each bounded by ``ScanLimits``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

GiB = 1 << 30
MiB = 1 << 20


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
    deadline: float | None = None  # a time.monotonic() value: past it, the rest is Skipped
