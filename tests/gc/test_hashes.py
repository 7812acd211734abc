"""The collector's compact sets (skyport/gc/hashes.py)."""

from __future__ import annotations

import random

from skyport.gc.hashes import HashSet64, RecentlySeen, hash64


def test_a_hash_set_holds_what_was_added_at_8_bytes_an_entry():
    rng = random.Random(12)
    added = [f"blobs/{rng.getrandbits(128):032x}" for _ in range(20_000)]
    absent = [f"blobs/{rng.getrandbits(128):032x}" for _ in range(20_000)]
    hashes = HashSet64()
    for key in added:
        hashes.add(hash64(key))
    hashes.add(hash64(added[0]))  # a duplicate is kept once
    hashes.freeze()
    assert all(hash64(key) in hashes for key in added)
    assert not any(hash64(key) in hashes for key in absent)
    assert len(hashes) == len(added)
    assert hashes.nbytes() == 8 * len(added)


def test_adding_after_a_lookup_is_seen():
    hashes = HashSet64()
    hashes.add(1)
    assert 1 in hashes and 2 not in hashes
    hashes.add(2)
    assert 2 in hashes


def test_recently_seen_is_bounded():
    seen = RecentlySeen(capacity=3)
    assert [seen.check_and_add(value) for value in (1, 2, 1, 3, 4, 2, 5, 1)] == [
        False,
        False,
        True,
        False,
        False,  # 2 is evicted here (1 was refreshed)
        False,
        False,
        False,
    ]
