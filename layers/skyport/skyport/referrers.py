"""The referrers API (distribution-spec v1.1 "Listing Referrers")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import media_types
from .digest import Digest
from .reference import validate_name
from .storage.ports import ManifestIndex


@dataclass(frozen=True, slots=True)
class ReferrerList:
    index: dict[str, Any]  # an OCI image index
    filtered: bool  # artifactType filter applied (OCI-Filters-Applied)


class ReferrerService:
    def __init__(self, index: ManifestIndex) -> None:
        self._index = index

    def list(self, repository: str, subject: str, artifact_type: str | None = None) -> ReferrerList:
        """An unknown subject has no referrers: an empty index, not an error."""
        validate_name(repository)
        Digest.parse(subject)
        descriptors = []
        for referrer in self._index.list_referrers(repository, subject):
            if artifact_type and referrer.artifact_type != artifact_type:
                continue
            descriptor: dict[str, Any] = {
                "mediaType": referrer.media_type, "digest": referrer.digest, "size": referrer.size,
            }
            if referrer.artifact_type:
                descriptor["artifactType"] = referrer.artifact_type
            if referrer.annotations:
                descriptor["annotations"] = referrer.annotations
            descriptors.append(descriptor)
        index = {"schemaVersion": 2, "mediaType": media_types.OCI_INDEX, "manifests": descriptors}
        return ReferrerList(index, filtered=bool(artifact_type))
