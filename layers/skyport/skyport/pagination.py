"""The `n` and `last` query parameters of tag and catalog listings (distribution-spec "Listing Tags")."""

from __future__ import annotations

from .errors import PaginationNumberInvalid
from .numerals import decimal

MAX_PAGE_SIZE = 10_000


def page_size(n: str | None, default: int) -> int:
    """``n`` as given, clamped to MAX_PAGE_SIZE (the Link header then leads on)."""
    if n is None or n == "":
        return default
    size = decimal(n, MAX_PAGE_SIZE)
    if size is None:
        raise PaginationNumberInvalid({"n": n[:50]})
    return size


def next_link(path: str, limit: int, last: str) -> str:
    from urllib.parse import urlencode

    return f'<{path}?{urlencode({"n": limit, "last": last})}>; rel="next"'
