"""Compact sets of digests and S3 keys for the garbage collector: 8-byte hashes.

A collision can only make the collector KEEP something (a link whose digest collides with
a referenced one, an object whose key collides with a live one), never remove it, so a
64-bit hash is enough: at a million entries the chance of any collision is about 3e-8.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from collections import OrderedDict

_BUCKETS = 256


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashSet64:
    """A set of 64-bit hashes at 8 bytes an entry (plus array growth slack): filled with
    ``add``, then ``freeze`` sorts it, bucket by bucket (256 buckets by the top byte, so
    sorting needs Python objects for 1/256 of the entries at a time), and ``in`` is a
    binary search. A Python set of ints would cost about 60 bytes an entry."""

    def __init__(self) -> None:
        self._buckets = [array("Q") for _ in range(_BUCKETS)]
        self._frozen = False

    def add(self, value: int) -> None:
        self._buckets[value >> 56].append(value)
        self._frozen = False

    def freeze(self) -> None:
        for index, bucket in enumerate(self._buckets):
            self._buckets[index] = array("Q", sorted(set(bucket)))
        self._frozen = True

    def __contains__(self, value: int) -> bool:
        if not self._frozen:
            self.freeze()
        bucket = self._buckets[value >> 56]
        position = bisect_left(bucket, value)
        return position < len(bucket) and bucket[position] == value

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets)

    def nbytes(self) -> int:
        return sum(bucket.buffer_info()[1] * bucket.itemsize for bucket in self._buckets)


class RecentlySeen:
    """A bounded LRU of hashes: shared base layers are marked once a run, not once a link."""

    def __init__(self, capacity: int = 4096) -> None:
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity

    def check_and_add(self, value: int) -> bool:
        """True if ``value`` was seen recently (and refreshes it); else remembers it."""
        if value in self._seen:
            self._seen.move_to_end(value)
            return True
        self._seen[value] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return False
