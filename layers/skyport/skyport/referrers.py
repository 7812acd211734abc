"""The referrers API (distribution-spec v1.1 "Listing Referrers")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import media_types
from .digest import Digest
from .reference import validate_name
from .storage.ports import ManifestIndex, ObjectStore


@dataclass(frozen=True, slots=True)
class ReferrerList:
    index: dict[str, Any]  # an OCI image index
    filtered: bool  # artifactType filter applied (OCI-Filters-Applied)


class ReferrerService:
    def __init__(self, index: ManifestIndex, objects: ObjectStore) -> None:
        self._index = index
        self._objects = objects

    def _annotations_from_body(self, repository: str, digest: str) -> dict[str, str] | None:
        """Annotations too big for the index (see storage/dynamodb/manifests.py: ANNOTATIONS_ITEM_LIMIT)."""
        record = self._index.get_manifest(repository, digest)
        if record is None:
            return None  # deleted meanwhile
        body = record.body if record.body is not None else self._objects.read(record.body_key or "")
        return json.loads(body).get("annotations")

    def list(self, repository: str, subject: str, artifact_type: str | None = None) -> ReferrerList:
        """An unknown subject has no referrers: an empty index, not an error."""
        validate_name(repository)
        Digest.parse(subject)
        descriptors = []
        for referrer in self._index.list_referrers(repository, subject):
            if artifact_type and referrer.artifact_type != artifact_type:
                continue
            descriptor: dict[str, Any] = {
                "mediaType": referrer.media_type,
                "digest": referrer.digest,
                "size": referrer.size,
            }
            if referrer.artifact_type:
                descriptor["artifactType"] = referrer.artifact_type
            annotations = referrer.annotations
            if referrer.annotations_in_body:
                annotations = self._annotations_from_body(repository, referrer.digest)
            if annotations:
                descriptor["annotations"] = annotations
            descriptors.append(descriptor)
        index = {"schemaVersion": 2, "mediaType": media_types.OCI_INDEX, "manifests": descriptors}
        return ReferrerList(index, filtered=bool(artifact_type))
