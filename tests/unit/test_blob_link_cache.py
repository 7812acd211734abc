"""The blob link cache alone (skyport/blob_cache.py): its bound, its order, its TTL, and a
fill that raced a delete. A clock of the test's own makes the TTL exact."""

from __future__ import annotations

import threading

import pytest
from skyport.blob_cache import BlobLinkCache
from skyport.config import Settings
from skyport.storage.ports import BlobRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(n: int) -> BlobRecord:
    return BlobRecord(digest=f"sha256:{n:064x}", size=n, key=f"blobs/{n}")


def test_least_recently_used_goes_first():
    cache = BlobLinkCache(max_entries=2, ttl_seconds=60)
    for n in (1, 2):
        cache.put("repo", record(n), cache.generation())
    assert cache.get("repo", record(1).digest) == record(1)  # 1 is now the most recent
    cache.put("repo", record(3), cache.generation())
    assert len(cache) == 2
    assert cache.get("repo", record(2).digest) is None
    assert cache.get("repo", record(1).digest) == record(1)
    assert cache.get("repo", record(3).digest) == record(3)


def test_links_are_per_repository():
    cache = BlobLinkCache(max_entries=10, ttl_seconds=60)
    cache.put("one", record(1), cache.generation())
    assert cache.get("two", record(1).digest) is None


def test_an_entry_dies_at_its_ttl():
    clock = Clock()
    cache = BlobLinkCache(max_entries=10, ttl_seconds=60, clock=clock)
    cache.put("repo", record(1), cache.generation())
    clock.now += 59.9
    assert cache.get("repo", record(1).digest) == record(1)  # a hit does not extend it
    clock.now += 0.1
    assert cache.get("repo", record(1).digest) is None
    assert len(cache) == 0


def test_forget_and_a_fill_that_started_before_it():
    cache = BlobLinkCache(max_entries=10, ttl_seconds=60)
    cache.put("repo", record(1), cache.generation())
    before_delete = cache.generation()  # a read of the link, begun before the delete ...
    cache.forget("repo", record(1).digest)
    assert cache.get("repo", record(1).digest) is None
    cache.put("repo", record(1), before_delete)  # ... answered after it: dropped
    assert cache.get("repo", record(1).digest) is None
    cache.put("repo", record(1), cache.generation())
    assert cache.get("repo", record(1).digest) == record(1)


@pytest.mark.parametrize(("entries", "seconds"), [(0, 60), (10, 0)])
def test_zero_turns_it_off(entries, seconds):
    cache = BlobLinkCache(max_entries=entries, ttl_seconds=seconds)
    cache.put("repo", record(1), cache.generation())
    assert cache.get("repo", record(1).digest) is None and len(cache) == 0


def test_threads_never_break_the_bound():
    cache = BlobLinkCache(max_entries=50, ttl_seconds=60)

    def work(offset: int) -> None:
        for n in range(2000):
            cache.put("repo", record(offset + n), cache.generation())
            cache.get("repo", record(offset + n // 2).digest)
            if n % 7 == 0:
                cache.forget("repo", record(offset + n).digest)

    threads = [threading.Thread(target=work, args=(i * 10_000,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 50


BASE = {"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t"}


def test_settings_defaults_and_values():
    defaults = Settings.from_env(BASE)
    assert (defaults.blob_cache_entries, defaults.blob_cache_seconds) == (4096, 60)
    chosen = Settings.from_env(
        {**BASE, "SKYPORT_BLOB_CACHE_ENTRIES": "100", "SKYPORT_BLOB_CACHE_SECONDS": "0"}
    )
    assert (chosen.blob_cache_entries, chosen.blob_cache_seconds) == (100, 0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SKYPORT_BLOB_CACHE_SECONDS", "-1"),
        ("SKYPORT_BLOB_CACHE_SECONDS", "3601"),
        ("SKYPORT_BLOB_CACHE_SECONDS", "٦٠"),  # Unicode digits int() would take
        ("SKYPORT_BLOB_CACHE_ENTRIES", "1e3"),
        ("SKYPORT_BLOB_CACHE_ENTRIES", "99999999999"),
    ],
)
def test_settings_refuse_bad_values_at_start(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({**BASE, name: value})
