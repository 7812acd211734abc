"""Go binaries: the build info the Go linker embeds (Go 1.18+), read as ``debug/buildinfo``
reads it, from a stream.

Any executable (ELF, Mach-O or PE, by its first bytes) may be a Go binary, and binaries are
big, so the file is searched chunk by chunk for the ``\\xff Go buildinf:`` magic (at a
16-byte aligned offset, where the linker puts the section), keeping only a few bytes across
chunks, never the file. After the magic: a 32-byte header (pointer size, flags), and when
flag bit 2 is set (Go 1.18+, "strings inline") the Go version and the module info as
uvarint-length-prefixed strings. The module info (between 16-byte sentinels) is
``runtime/debug.BuildInfo``'s text: ``path``, ``mod`` (the main module), ``dep`` lines, and
``=>`` lines replacing the line before. Older binaries point at the strings instead (Go
1.17 and before): reported, not read.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from skyport.scanning.catalogers import NOTHING, Candidate, Found

MAGIC = b"\xff Go buildinf:"
FLAG_INLINE_STRINGS = 0x2
HEADER = 32
CHUNK = 1 << 20
MAX_INFO = 4 << 20  # the version and module info together: a big program's deps fit easily
EXECUTABLE_MAGICS = (
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"MZ",
)
SNIFF_BYTES = max(len(magic) for magic in EXECUTABLE_MAGICS)
_GO_VERSION = re.compile(r"^go(\d+(?:\.\d+)*)$")


def is_executable(head: bytes) -> bool:
    return head.startswith(EXECUTABLE_MAGICS)


def find_build_info(stream: BinaryIO, head: bytes = b"") -> bytes | None:
    """The bytes from the magic on (at most the header and ``MAX_INFO``), or None."""
    carry, base = head, 0  # base: offset in the file of carry[0]
    while True:
        chunk = stream.read(CHUNK)
        window = carry + chunk
        start = 0
        while (at := window.find(MAGIC, start)) >= 0:
            if (base + at) % 16 == 0:
                found = bytearray(window[at:])
                while len(found) < HEADER + MAX_INFO and (more := stream.read(CHUNK)):
                    found += more
                return bytes(found[: HEADER + MAX_INFO])
            start = at + 1
        if not chunk:
            return None
        keep = len(MAGIC) - 1
        carry = window[-keep:]
        base += len(window) - len(carry)


def _uvarint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    raise ValueError("truncated length")


def _string(data: bytes, position: int) -> tuple[str, int]:
    length, position = _uvarint(data, position)
    if position + length > len(data):
        raise ValueError("string runs past the build info")
    return data[position : position + length].decode("utf-8", errors="replace"), position + length


def module_candidate(path: str, version: str) -> Candidate:
    namespace, _, name = path.rpartition("/")
    return Candidate("golang", namespace or None, name, version, name=path, version=version)


def parse(info: bytes) -> Found:
    if len(info) < HEADER:
        return Found(gaps=(("", "Go build info truncated"),))
    if not info[15] & FLAG_INLINE_STRINGS:
        return Found(gaps=(("", "Go build info before 1.18 (pointer format): not read"),))
    try:
        go_version, position = _string(info, HEADER)
        modinfo, _ = _string(info, position)
    except ValueError as error:
        return Found(gaps=(("", f"Go build info malformed: {error}"),))
    # debug/buildinfo: strip the sentinels around the text when present.
    if len(modinfo) >= 33 and modinfo[-17] == "\n":
        modinfo = modinfo[16:-16]
    modules: list[list[str]] = []  # [path, version], the main module first when versioned
    for line in modinfo.splitlines():
        fields = line.split("\t")
        if fields[0] in ("mod", "dep") and len(fields) >= 3:
            main_unversioned = fields[0] == "mod" and fields[2] in ("", "(devel)")
            modules.append([fields[1], "" if main_unversioned else fields[2]])
        elif fields[0] == "=>" and len(fields) >= 3 and modules:
            modules[-1] = [fields[1], fields[2]]  # a local replacement has no version: dropped
    candidates = [module_candidate(path, version) for path, version in modules if path and version]
    match = _GO_VERSION.match(go_version.split(" ")[0].strip())
    if match:
        candidates.insert(0, module_candidate("stdlib", f"v{match.group(1)}"))
    return Found(tuple(candidates)) if candidates else NOTHING


def read_stream(path: str, stream: BinaryIO, head: bytes) -> Found:
    info = find_build_info(stream, head)
    if info is None:
        return NOTHING
    found = parse(info)
    return Found(found.candidates, gaps=tuple((path, reason) for _, reason in found.gaps))
