"""The repository catalog (distribution-spec extension `GET /v2/_catalog`, as Distribution serves it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .storage.ports import ManifestIndex, Page

if TYPE_CHECKING:
    from .auth.policy import Access


class CatalogService:
    def __init__(self, index: ManifestIndex) -> None:
        self._index = index

    def list(self, limit: int, last: str | None, reader: Access | None = None) -> Page:
        """A page of repository names; with ``reader``, only those it may pull (the
        others are skipped as if absent, and pages fill up past them)."""
        if not limit:
            return Page([], False)
        if reader is None or reader.pulls_everything:
            return self._index.list_repositories(limit, last)
        visible: list[str] = []
        while True:
            page = self._index.list_repositories(limit, last)
            for name in page.items:
                if reader.may_pull(name):
                    if len(visible) == limit:
                        return Page(visible, True)  # one more exists: there is a next page
                    visible.append(name)
            if not page.has_more or not page.items:
                return Page(visible, False)
            last = page.items[-1]
