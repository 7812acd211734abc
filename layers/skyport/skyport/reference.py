"""Repository names and tags (distribution-spec "Pulling manifests", name and tag grammar)."""

from __future__ import annotations

import re

from .errors import NameInvalid, TagInvalid

# <name>: path components separated by "/", each [a-z0-9]+ joined by
# separators "." "_" "__" or runs of "-". Anything else (including "..",
# empty components, upper case, percent-encoded slashes) is refused, which
# also rules out path traversal.
# Always applied with fullmatch: "$" also matches before a trailing newline, so
# a "^...$" search would let "v1\n" through (tag, name and digest alike).
_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# Distribution's limit; the spec asks registries to accept at least 255
# characters for host plus name.
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise NameInvalid({"name": name[:MAX_NAME_LENGTH]})
    return name


def validate_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise TagInvalid({"tag": tag[:256]}, message="invalid tag")
    return tag
