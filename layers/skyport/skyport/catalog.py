"""The repository catalog (distribution-spec extension `GET /v2/_catalog`, as Distribution serves it)."""

from __future__ import annotations

from .storage.ports import ManifestIndex, Page


class CatalogService:
    def __init__(self, index: ManifestIndex) -> None:
        self._index = index

    def list(self, limit: int, last: str | None) -> Page:
        if not limit:
            return Page([], False)
        return self._index.list_repositories(limit, last)
