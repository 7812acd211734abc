"""Tag listing (distribution-spec "Listing Tags")."""

from __future__ import annotations

from .errors import NameUnknown
from .reference import validate_name
from .storage.ports import ManifestIndex, Page


class TagService:
    def __init__(self, index: ManifestIndex) -> None:
        self._index = index

    def list(self, repository: str, limit: int, last: str | None) -> Page:
        validate_name(repository)
        page = self._index.list_tags(repository, limit, last) if limit else Page([], False)
        if not page.items and not self._index.repository_exists(repository):
            raise NameUnknown({"name": repository})
        return page
