"""Decimal numbers sent by clients (query parameters, headers).

Only ASCII digits count: ``str.isdigit`` also accepts other Unicode digits
("²", "٣"), some of which ``int`` then refuses, and ``int`` refuses any string
of more than 4,300 digits (``sys.int_max_str_digits``). Either would escape as
an unexpected error; here both are plain client input.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]+")  # fullmatch: "$" would also match before a trailing newline


def decimal(text: str, cap: int) -> int | None:
    """``text`` as a non-negative integer clamped to ``cap``; None when it is not
    ASCII digits only. Never converts more digits than ``cap`` has."""
    if not _DIGITS.fullmatch(text):
        return None
    significant = text.lstrip("0")
    if len(significant) > len(str(cap)):
        return cap
    return min(int(significant or "0"), cap)
