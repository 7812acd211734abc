"""Digests (image-spec "Digests"): ``algorithm ":" encoded``.

Registered algorithms are sha256 (64 lowercase hex) and sha512 (128). The
resumable hashers come from ``rehashes``, whose state serializes to bytes so an
upload can be hashed across requests and processes without re-reading it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import rehashes

from .errors import DigestInvalid

_ENCODED_LENGTH = {"sha256": 64, "sha512": 128}
_RESUMABLE = {"sha256": rehashes.PySha256, "sha512": rehashes.PySha512}
# Applied with fullmatch ("$" would also match before a trailing newline).
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")

CANONICAL_ALGORITHM = "sha256"


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate; anything off is ``DIGEST_INVALID``."""
        if not text or len(text) > 256 or not _GRAMMAR.fullmatch(text):
            raise DigestInvalid({"digest": text[:256]}, message="invalid digest")
        algorithm, encoded = text.split(":", 1)
        expected = _ENCODED_LENGTH.get(algorithm)
        if expected is None:
            raise DigestInvalid({"digest": text}, message=f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != expected or not all(c in "0123456789abcdef" for c in encoded):
            raise DigestInvalid({"digest": text}, message="digest is not lowercase hex of the right length")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = CANONICAL_ALGORITHM) -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def is_digest(text: str) -> bool:
    return ":" in text


class ResumableHash:
    """A hasher whose state can be saved between requests (see module doc)."""

    def __init__(self, algorithm: str, state: bytes | None = None) -> None:
        impl = _RESUMABLE[algorithm]
        self.algorithm = algorithm
        self._hasher = impl.deserialize(state) if state else impl()

    def update(self, data: bytes) -> None:
        self._hasher.update(data)

    def state(self) -> bytes:
        return bytes(self._hasher.serialize())

    def digest(self) -> Digest:
        # finalize() consumes the hasher: hash a restored copy so the live
        # state stays usable.
        copy = type(self._hasher).deserialize(self._hasher.serialize())
        return Digest(self.algorithm, copy.finalize())
