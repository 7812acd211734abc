"""Manifests (distribution-spec "Pulling manifests", "Pushing Manifests", "Deleting Manifests")."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import media_types
from .config import Settings
from .digest import CANONICAL_ALGORITHM, Digest, is_digest
from .errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    PayloadTooLarge,
    TagInvalid,
    immutable_tag,
)
from .reference import validate_name, validate_tag
from .storage import keys
from .storage.ports import (
    ManifestIndex,
    ManifestRecord,
    MissingReferences,
    ObjectStore,
    StorageUnavailable,
    TagImmutable,
)

if TYPE_CHECKING:
    from .immutability import ImmutabilityRule, ImmutabilityRules


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    blobs: dict[str, int]  # digest -> size the manifest claims
    manifests: list[str]  # child manifests (indexes)
    subject: str | None
    artifact_type: str | None
    annotations: dict[str, str] | None


# RFC 6838 section 4.2 names: type "/" subtype, each 1-127 restricted-name characters.
# image-spec: artifactType MUST comply; it is stored and listed by the referrers API.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
# Applied with fullmatch ("$" would also match before a trailing newline).
_MEDIA_TYPE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
# Descriptor media types are only length-checked (parameters seen in the wild stay
# accepted); the bound keeps a config mediaType, stored as the artifact type, small.
MAX_MEDIA_TYPE_LENGTH = 255


def _invalid(reason: str, **detail: Any) -> ManifestInvalid:
    return ManifestInvalid({"reason": reason, **detail}, message=f"manifest invalid: {reason}")


def _descriptor(value: Any, where: str) -> tuple[str, int, str]:
    """Validate an image-spec descriptor; returns (digest, size, mediaType)."""
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where} has no mediaType")
    if len(media_type) > MAX_MEDIA_TYPE_LENGTH:
        raise _invalid(f"{where} has a mediaType longer than {MAX_MEDIA_TYPE_LENGTH} characters")
    if not isinstance(digest, str):
        raise _invalid(f"{where} has no digest")
    try:
        Digest.parse(digest)
    except DigestInvalid as error:
        raise _invalid(f"{where} has an invalid digest", digest=digest[:200]) from error
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where} has no valid size")
    return digest, size, media_type


def _media_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


# JSON nesting a manifest may have. Real ones nest 5 or 6 deep (an annotation in a
# descriptor in a list in the document). json.loads recurses once per level, so a
# deep array anywhere in a body (60,000 levels fit in a few bytes per level) would
# reach the interpreter's recursion limit: the depth is bounded before parsing.
MAX_JSON_DEPTH = 64
# How deep below an immutable tag's index its children are looked at when a delete asks
# whether they are in use (refuse_deleting_immutable_content).
MAX_IMMUTABLE_NESTING = 2
# A JSON string, or an unterminated one running to the end of the text (possessive,
# and matching at every quote it starts at: linear on any input). Brackets in
# strings are text, not nesting.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


@functools.cache
def _balanced_within(limit: int) -> re.Pattern[bytes]:
    """Balanced "[]" pairs nested at most ``limit`` deep, as a regex: ``limit`` nested
    possessive groups, so a match never backtracks (linear; fails at the first
    bracket too deep). Built on first use: compiling it costs about 10 ms."""
    pattern = rb""
    for _ in range(limit):
        pattern = rb"(?:\[" + pattern + rb"\])*+"
    return re.compile(pattern)


def _nests_within(text: str, limit: int) -> bool:
    """Whether the arrays and objects of JSON ``text`` nest at most ``limit`` deep,
    without parsing it: the brackets outside strings, checked by _balanced_within."""
    if text.count("[") + text.count("{") <= limit:
        return True
    outside = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    brackets = outside.translate(None, _NOT_BRACKETS).replace(b"{", b"[").replace(b"}", b"]")
    return _balanced_within(limit).fullmatch(brackets) is not None


def _check_reference_count(count: int, limit: int | None) -> None:
    # Every reference is looked up before the manifest is stored ("Pushing Manifests":
    # the registry MUST refuse a manifest that references what it lacks); the cap
    # bounds that work, and what one request may cost behind API Gateway's 30 s.
    if limit is not None and count > limit:
        raise ManifestInvalid(
            {"reason": "too many references", "references": count, "limit": limit},
            message=f"manifest invalid: it references {count} blobs or manifests, more than"
            f" the {limit} this registry accepts in one manifest",
        )


def manifest_record(digest: str, body: bytes, parsed: ParsedManifest, inline_limit: int) -> ManifestRecord:
    """What the index stores for a manifest (a push's, or one the pull-through cache
    fetched): the body inline up to ``inline_limit`` bytes, else its S3 key (the caller
    puts the body there first)."""
    inline = len(body) <= inline_limit
    return ManifestRecord(
        digest=digest,
        media_type=parsed.media_type,
        size=len(body),
        body=body if inline else None,
        body_key=None if inline else keys.manifest_object(digest),
        subject=parsed.subject,
        artifact_type=parsed.artifact_type,
        annotations=parsed.annotations,
    )


def parse_manifest(
    body: bytes, content_type: str | None, max_references: int | None = None
) -> ParsedManifest:
    """The manifest's media type, references and referrers fields, validated. With
    ``max_references``, a manifest listing more descriptors than that (config and layers,
    or child manifests) is refused before any of them is read."""
    try:
        # As json.loads(bytes) does: UTF-8, -16 or -32, told apart by the first bytes.
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError as error:
        raise _invalid("body is not JSON") from error
    if not _nests_within(text, MAX_JSON_DEPTH):
        raise _invalid(f"body is not JSON nested at most {MAX_JSON_DEPTH} levels deep")
    try:
        document = json.loads(text)
    except ValueError as error:
        raise _invalid("body is not JSON") from error
    if not isinstance(document, dict):
        raise _invalid("body is not a JSON object")
    if document.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2 (Docker schema 1 is not supported)")
    declared = document.get("mediaType")
    header = _media_type(content_type)
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType is not a string")
    # image-spec: when mediaType is set it must match the Content-Type it was pushed with.
    if declared and header and declared != header:
        raise _invalid("mediaType does not match Content-Type", mediaType=declared, contentType=header)
    media_type = declared or header
    if media_type not in media_types.MANIFESTS:
        raise _invalid("unsupported manifest media type", mediaType=media_type)

    blobs: dict[str, int] = {}
    children: list[str] = []

    def need_blob(digest: str, size: int) -> None:
        if blobs.setdefault(digest, size) != size:
            raise _invalid("one digest is given two sizes", digest=digest)

    if media_type in media_types.IMAGE_MANIFESTS:
        digest, size, config_type = _descriptor(document.get("config"), "config")
        need_blob(digest, size)
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise _invalid("layers is not a list")
        _check_reference_count(len(layers) + 1, max_references)
        for position, layer in enumerate(layers):
            digest, size, layer_type = _descriptor(layer, f"layers[{position}]")
            if layer_type not in media_types.NON_DISTRIBUTABLE_LAYERS:
                need_blob(digest, size)
        artifact_type = document.get("artifactType") or (
            config_type if media_type == media_types.OCI_MANIFEST else None
        )
    else:
        manifests = document.get("manifests")
        if not isinstance(manifests, list):
            raise _invalid("manifests is not a list")
        _check_reference_count(len(manifests), max_references)
        for position, child in enumerate(manifests):
            digest, _, _ = _descriptor(child, f"manifests[{position}]")
            children.append(digest)
        artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType is not a string")
    if document.get("artifactType") and not _MEDIA_TYPE.fullmatch(artifact_type or ""):
        raise _invalid("artifactType is not a media type (RFC 6838)", artifactType=str(artifact_type)[:300])

    subject = None
    if document.get("subject") is not None:
        subject, _, _ = _descriptor(document["subject"], "subject")
    annotations = document.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise _invalid("annotations must map strings to strings")
    return ParsedManifest(media_type, blobs, children, subject, artifact_type, annotations or None)


def accepts(media_type: str, accept_headers: Iterable[str]) -> bool:
    """Whether the client's Accept headers admit ``media_type``. Clients send
    several Accept lines (skopeo, podman) or comma lists (docker). A client
    that names no manifest type at all (curl, plain HTTP tools) gets what is stored."""
    offered = {
        value.split(";", 1)[0].strip().lower()
        for header in accept_headers
        for value in header.split(",")
        if value.strip()
    }
    if not offered & media_types.MANIFESTS or "*/*" in offered:
        return True
    return media_type in offered


@dataclass(frozen=True, slots=True)
class PushedManifest:
    digest: str
    subject: str | None


class ManifestService:
    def __init__(
        self,
        objects: ObjectStore,
        index: ManifestIndex,
        settings: Settings,
        immutability: ImmutabilityRules | None = None,
        before_push: Callable[[str], None] | None = None,
    ) -> None:
        self._objects = objects
        self._index = index
        self._settings = settings
        # Raises to refuse a client's push into ``repository`` once the manifest is parsed
        # (registry.py: a pull-through cache prefix is read-only to clients).
        self._before_push = before_push
        # Tag immutability rules (skyport/immutability.py: what is refused, and why); None: none.
        self._immutability = immutability

    def _covering(self, repository: str, tag: str) -> ImmutabilityRule | None:
        """The immutability rule that makes the tag immutable, if any (cached rules: no read)."""
        return self._immutability.covering(repository, tag) if self._immutability is not None else None

    def resolve(self, repository: str, reference: str) -> ManifestRecord:
        """HEAD and the first half of GET: by digest or by tag, one DynamoDB read."""
        validate_name(repository)
        if is_digest(reference):
            Digest.parse(reference)
            record = self._index.get_manifest(repository, reference)
        else:
            try:
                validate_tag(reference)
            except TagInvalid:
                # distribution-spec "Pulling manifests": a GET or HEAD of a manifest that
                # does not exist answers 404 MANIFEST_UNKNOWN, and one named by neither a
                # tag nor a digest cannot exist (the conformance suite asks this of
                # `.INVALID_MANIFEST_NAME`). A PUT with such a tag stays TAG_INVALID.
                raise ManifestUnknown({"name": repository, "reference": reference[:256]}) from None
            record = self._index.get_tag(repository, reference)
        if record is None:
            raise ManifestUnknown({"name": repository, "reference": reference})
        return record

    def fetch(
        self, repository: str, reference: str, accept: Iterable[str] = (), include_body: bool = True
    ) -> tuple[ManifestRecord, bytes | None]:
        """GET (and HEAD, without the body): the manifest, if the client accepts its type."""
        record = self.resolve(repository, reference)
        if not accepts(record.media_type, accept):
            raise ManifestUnknown(
                {"name": repository, "reference": reference, "mediaType": record.media_type},
                message="manifest exists, but not in a media type the client accepts",
            )
        if not include_body:
            return record, None
        body = record.body if record.body is not None else self._objects.read(record.body_key or "")
        return record, body

    def push(self, repository: str, reference: str, content_type: str | None, body: bytes) -> PushedManifest:
        validate_name(repository)
        if len(body) > self._settings.max_manifest_size:
            raise PayloadTooLarge(
                {"limit": self._settings.max_manifest_size}, message="manifest exceeds the size limit"
            )
        tag: str | None = None
        if is_digest(reference):
            given = Digest.parse(reference)
            digest = Digest.of(body, given.algorithm)
            if digest != given:
                raise DigestInvalid({"digest": reference}, message="manifest body does not match the digest")
        else:
            tag = validate_tag(reference)
            digest = Digest.of(body, CANONICAL_ALGORITHM)
        parsed = parse_manifest(body, content_type, self._settings.max_manifest_references)
        if self._before_push is not None:
            self._before_push(repository)
        digest_text = str(digest)
        record = manifest_record(digest_text, body, parsed, self._settings.inline_manifest_limit)
        inline = record.body is not None
        rule: ImmutabilityRule | None = None
        try:
            if not inline:
                # References are checked before the body is written, so a manifest refused
                # for them leaves storage as it was; put_manifest checks them again with the
                # write. The body is content-addressed, so writing it before the metadata
                # is safe: a push failing past here leaves at most an unreferenced copy.
                self._index.check_references(repository, digest_text, parsed.blobs, parsed.manifests)
            # After the references' check: a push refused for them needs no rule (the rules
            # are cached, but the first push of a period reads them).
            rule = self._covering(repository, tag) if tag is not None else None
            if not inline:
                if rule is not None and tag is not None:
                    # Likewise a move of an immutable tag, refused here before the body is
                    # written (one read, for such pushes only); put_manifest's condition
                    # refuses it again, atomically, if a push raced this one.
                    current = self._index.get_tag(repository, tag)
                    if current is not None and current.digest != digest_text:
                        raise TagImmutable(tag, current.digest)
                self._objects.put(record.body_key, body)
            self._index.put_manifest(
                repository,
                record,
                tag,
                parsed.blobs,
                parsed.manifests,
                parsed.subject,
                immutable_tag=rule is not None,
            )
        except MissingReferences as missing:
            # distribution-spec "Pushing Manifests": a manifest refused for a reference
            # to a blob *or manifest* the repository lacks MUST get MANIFEST_BLOB_UNKNOWN.
            raise ManifestBlobUnknown({"digests": missing.blobs + missing.manifests}) from missing
        except TagImmutable as refused:
            assert rule is not None and tag is not None
            raise immutable_tag(repository, tag, "overwrite", rule.fields(), digest_text) from refused
        return PushedManifest(digest_text, parsed.subject)

    def refuse_deleting_immutable_content(self, repository: str, digest: str) -> None:
        """DENIED when ``digest`` is part of an image an immutable tag of ``repository``
        names: a child manifest of its index, or a config or layer of it or of its
        children (skyport/immutability.py, "What a tag's manifest references"). Nothing to
        do, and no read, when no rule covers the repository."""
        guard = self._immutability.guard(repository) if self._immutability else None
        if guard is None:
            return
        verdicts: dict[str, bool] = {}  # manifest digest -> whether it uses ``digest``

        def uses(record: ManifestRecord, depth: int) -> bool:
            if record.digest not in verdicts:
                verdicts[record.digest] = False  # a cycle cannot recurse forever
                body = record.body if record.body is not None else self._objects.read(record.body_key or "")
                try:
                    parsed = parse_manifest(body, record.media_type)
                except ManifestInvalid:
                    return False  # validated at push; an unreadable one references nothing
                found = digest in parsed.blobs or digest in parsed.manifests
                # Children of an index (and of a nested index, two levels down: the image
                # index spec does not forbid nesting, and nothing deeper is seen in use).
                for child in parsed.manifests if depth < MAX_IMMUTABLE_NESTING and not found else ():
                    child_record = self._index.get_manifest(repository, child)
                    if child_record is not None and uses(child_record, depth + 1):
                        found = True
                        break
                verdicts[record.digest] = found
            return verdicts[record.digest]

        # The tag items carry their manifests: one paged Query, bodies inline (or in S3).
        for tag, record in self._index.tagged(repository):
            rule = guard(tag)
            if rule is not None and record.digest != digest and uses(record, 0):
                raise immutable_tag(repository, tag, "delete referenced", rule.fields(), digest)

    def delete(self, repository: str, reference: str, pushed_ms: int | None = None) -> None:
        """By digest: the manifest and its tags. By tag: only the tag (distribution-spec 1.1).
        Neither while an immutable tag would go (DENIED; skyport/immutability.py). With
        ``pushed_ms`` (retention, by digest only): only if no push named the manifest since
        it was last pushed then, else MANIFEST_UNKNOWN and nothing removed."""
        validate_name(repository)
        if is_digest(reference):
            Digest.parse(reference)
            # Not while an immutable tag names it (skyport/immutability.py says why).
            guard = self._immutability.guard(repository) if self._immutability else None
            self.refuse_deleting_immutable_content(repository, reference)
            try:
                deleted = self._index.delete_manifest(
                    repository, reference, (lambda tag: guard(tag) is not None) if guard else None, pushed_ms
                )
            except TagImmutable as refused:
                assert guard is not None
                rule = guard(refused.tag)
                assert rule is not None
                raise immutable_tag(repository, refused.tag, "delete manifest", rule.fields()) from refused
            if deleted is None:
                raise ManifestUnknown({"name": repository, "reference": reference})
            # Its last manifest gone, the repository leaves the catalog (the stream's
            # repository.deleted). Best effort: the manifest is deleted either way, and a
            # repository listed while empty is what the catalog showed before this existed.
            try:
                self._index.forget_repository_if_empty(repository)
            except StorageUnavailable:
                pass
        else:
            validate_tag(reference)
            rule = self._covering(repository, reference)
            if rule is not None:
                # An immutable tag is never deleted; one that does not exist is still unknown.
                if self._index.get_tag(repository, reference) is None:
                    raise ManifestUnknown({"name": repository, "reference": reference})
                raise immutable_tag(repository, reference, "delete", rule.fields())
            if not self._index.delete_tag(repository, reference):
                raise ManifestUnknown({"name": repository, "reference": reference})
