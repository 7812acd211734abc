"""The repository catalog (distribution-spec extension `GET /v2/_catalog`, as Distribution serves it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .storage.ports import ManifestIndex, Page

if TYPE_CHECKING:
    from .auth.policy import Access

# A caller who may pull few repositories would otherwise have every repository read
# to fill one page. One request reads the catalog SCAN_PAGE names at a time and
# examines at most MAX_EXAMINED of them; past that it answers with what it found and
# a Link that continues after the last name examined (the page may hold fewer than
# n names, even none: distribution-spec "Listing Tags" pagination, which the catalog
# follows, lets a client follow Link until there is none).
SCAN_PAGE = 1000
MAX_EXAMINED = 5000


class CatalogService:
    def __init__(
        self, index: ManifestIndex, max_examined: int = MAX_EXAMINED, scan_page: int = SCAN_PAGE
    ) -> None:
        self._index = index
        self._max_examined = max_examined
        self._scan_page = scan_page

    def list(self, limit: int, last: str | None, reader: Access | None = None) -> Page:
        """A page of repository names; with ``reader``, only those it may pull (the
        others are skipped as if absent, and pages fill up past them, within the cap)."""
        if not limit:
            return Page([], False)
        if reader is None or reader.pulls_everything:
            return self._index.list_repositories(limit, last)
        visible: list[str] = []
        examined = 0
        while True:
            page = self._index.list_repositories(min(self._scan_page, self._max_examined - examined), last)
            for name in page.items:
                if reader.may_pull(name):
                    if len(visible) == limit:
                        return Page(visible, True)  # one more exists: there is a next page
                    visible.append(name)
            examined += len(page.items)
            if not page.has_more or not page.items:
                return Page(visible, False)
            last = page.items[-1]
            if examined >= self._max_examined:
                return Page(visible, True, resume_after=last)
