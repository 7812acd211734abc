"""Hypothesis strategies for hostile requests: names, tags, digests, upload ids,
numbers, headers, credentials and bodies, each mixing values that exist in the
world (so requests reach deep into the services), well-formed values that do
not, and malformed ones (issue 9, section 2: Unicode digits, trailing newlines,
deep JSON, huge counts, quotes and CR/LF)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from hypothesis import strategies as st
from oci import DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST

# The spec's grammar (distribution-spec "Pulling manifests"), written out here again
# so that the tests do not take the registry's word for what is valid.
NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME = rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*"
TAG = r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"

# Characters that broke something once, or that parsers treat specially.
NASTY = [
    "\n",
    "\r",
    "\r\n",
    "\x00",
    '"',
    "'",
    "\\",
    " ",
    "\t",
    "%",
    "%0D",
    "%0A",
    "..",
    "/",
    "//",
    ":",
    "@",
    "?",
    "#",
    ";",
    ",",
    "=",
    "\u00b2",
    "\u0663",
    "\u00e9",
    "\u202e",
    "\ufeff",
    "\U0001f600",
]
UNICODE_DIGITS = [
    "\u00b2",
    "\u00b3",
    "\u00b9",
    "\u0663",
    "\u06f5",
    "\u0967",
    "\uff15",
    "\U0001d7d8",
    "\u2460",
]
MEDIA_TYPES = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_LIST,
    OCI_CONFIG,
    OCI_LAYER,
    "application/json",
    "application/octet-stream",
    "*/*",
    "text/plain",
]

# Text of any kind (surrogates excepted: a header or URL cannot carry them), and
# text biased towards the characters above.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
with_surrogates = st.text(st.characters(exclude_categories=[]), max_size=30)
nasty_text = st.lists(st.sampled_from(NASTY) | any_text, max_size=6).map("".join)


def _mutated(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value with something hostile before, in, or after it."""
    return st.one_of(
        st.tuples(valid, st.sampled_from(NASTY)).map("".join),  # "v1\n", 'a"'
        st.tuples(st.sampled_from(NASTY), valid).map("".join),
        st.tuples(valid, st.sampled_from(NASTY), valid).map("".join),
        valid.map(str.upper),
        st.tuples(valid, st.sampled_from([40, 300])).map(lambda t: t[0] * t[1]),  # past every length limit
    )


@dataclass
class World:
    """What exists in the registry under test, for strategies to pick from."""

    names: list[str]
    tags: list[str]
    digests: list[str]  # manifests and blobs that exist
    upload_ids: list[str]
    tokens: list[str] = field(default_factory=list)  # genuine bearer tokens (auth on)
    basic: list[str] = field(default_factory=list)  # genuine Basic credentials (auth on)


def names(world: World) -> st.SearchStrategy[str]:
    valid = st.from_regex(NAME, fullmatch=True).filter(lambda n: len(n) <= 255)
    return st.one_of(st.sampled_from(world.names), valid, _mutated(st.sampled_from(world.names)), nasty_text)


def hex_digest(algorithm: str, length: int) -> st.SearchStrategy[str]:
    return st.text("0123456789abcdef", min_size=length, max_size=length).map(f"{algorithm}:".__add__)


def digests(world: World) -> st.SearchStrategy[str]:
    valid = hex_digest("sha256", 64) | hex_digest("sha512", 128)
    return st.one_of(
        st.sampled_from(world.digests),
        valid,
        _mutated(st.sampled_from(world.digests)),
        st.tuples(
            st.sampled_from(["sha256", "sha512", "md5", "SHA256", "sha256+b64", ""]),
            st.text("0123456789abcdefABCDEF=_-" + "".join(UNICODE_DIGITS), max_size=140),
        ).map(":".join),
        nasty_text,
    )


def tags(world: World) -> st.SearchStrategy[str]:
    valid = st.from_regex(TAG, fullmatch=True)
    return st.one_of(st.sampled_from(world.tags), valid, _mutated(st.sampled_from(world.tags)), nasty_text)


def references(world: World) -> st.SearchStrategy[str]:
    return tags(world) | digests(world)


def upload_ids(world: World) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(world.upload_ids),
        st.uuids().map(str),
        _mutated(st.sampled_from(world.upload_ids)),
        nasty_text,
    )


def numbers() -> st.SearchStrategy[str]:
    """What clients send where a count is expected (``n``, Content-Length)."""
    return st.one_of(
        st.integers(0, 20_000).map(str),
        st.integers(-5, 10**30).map(str),
        st.lists(st.sampled_from(UNICODE_DIGITS + list("0123456789")), min_size=1, max_size=4).map("".join),
        st.sampled_from(
            [
                "",
                "-1",
                "+5",
                " 5",
                "5 ",
                "5\n",
                "1e3",
                "0x10",
                "1_000",
                "5.0",
                "NaN",
                "0" * 5000 + "7",
                "9" * 5000,
                "9" * 4301,
            ]
        ),
        any_text,
    )


def content_ranges() -> st.SearchStrategy[str]:
    offsets = st.integers(0, 2**70).map(str) | st.sampled_from(UNICODE_DIGITS) | st.just("9" * 5000)
    return st.one_of(
        st.tuples(st.integers(0, 300), st.integers(0, 300)).map(lambda r: f"{r[0]}-{r[1]}"),
        st.tuples(offsets, offsets).map("-".join),
        st.tuples(offsets, offsets).map(lambda r: f"bytes {r[0]}-{r[1]}/*"),
        nasty_text,
    )


def accept_lines() -> st.SearchStrategy[list[str]]:
    line = st.lists(st.sampled_from(MEDIA_TYPES) | any_text, min_size=1, max_size=3).map(", ".join)
    return st.lists(line, max_size=3)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


b64url = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=60)


def forged_tokens(world: World) -> st.SearchStrategy[str]:
    """Bearer tokens that must be refused: a genuine one cut short or with another
    signature (of every length: 1 and 5 characters once gave a 500), and made-up ones."""
    genuine = st.sampled_from(world.tokens) if world.tokens else st.just("a.b.c")
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS256", "kid": "x"}).encode())
    return st.one_of(
        st.tuples(genuine, st.integers(0, 400)).map(lambda t: t[0][: t[1]]),
        st.tuples(genuine, b64url).map(lambda t: t[0].rsplit(".", 1)[0] + "." + t[1]),
        st.tuples(genuine, st.integers(1, 3)).map(lambda t: t[0] + "." * t[1]),
        st.tuples(b64url, b64url, b64url).map(".".join),
        st.tuples(st.just(header), b64url, b64url).map(".".join),
        st.tuples(st.binary(max_size=60), st.binary(max_size=60), b64url).map(
            lambda t: f"{_b64(t[0])}.{_b64(t[1])}.{t[2]}"
        ),
        nasty_text,
    )


def authorizations(world: World) -> st.SearchStrategy[str | None]:
    """An Authorization header, or None. Genuine credentials most of the time, so that
    requests reach the routes. Wrong passwords are only tried for unknown users: for a
    real user they count towards a lockout, a write that a refusal may well make."""
    forged_basic = st.one_of(
        st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
        st.tuples(st.from_regex(r"nobody[a-z]{0,6}", fullmatch=True), any_text).map(
            lambda t: base64.b64encode(f"{t[0]}:{t[1]}".encode()).decode()
        ),
        nasty_text,
    )
    genuine = [f"Basic {b}" for b in world.basic] + [f"Bearer {t}" for t in world.tokens]
    return st.one_of(
        st.sampled_from(genuine) if genuine else st.none(),
        st.sampled_from(genuine) if genuine else st.none(),
        st.none(),
        forged_tokens(world).map("Bearer ".__add__),
        forged_basic.map("Basic ".__add__),
        st.tuples(
            st.sampled_from(["Bearer", "Basic", "bearer", "BASIC", "Digest", "", "Bearer  "]), nasty_text
        ).map(" ".join),
    )


# --- bodies --------------------------------------------------------------------------------------


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def manifest_documents(world: World) -> st.SearchStrategy[dict]:
    """Manifests that look right, with fields of every kind swapped in."""
    descriptor = st.fixed_dictionaries(
        {
            "mediaType": st.sampled_from(MEDIA_TYPES) | any_text,
            "digest": digests(world),
            "size": st.one_of(st.integers(-1, 5000), st.just(10**30), st.floats(allow_nan=False), any_text),
        }
    )
    json_value = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
        max_leaves=10,
    )
    return st.fixed_dictionaries(
        {"schemaVersion": st.sampled_from([2, 2, 1, "2", 2.0, None])},
        optional={
            "mediaType": st.sampled_from(MEDIA_TYPES) | any_text,
            "config": descriptor | json_value,
            "layers": st.lists(descriptor, max_size=5) | json_value,
            "manifests": st.lists(descriptor, max_size=5) | json_value,
            "subject": descriptor | json_value,
            "artifactType": st.sampled_from(MEDIA_TYPES) | any_text | json_value,
            "annotations": st.dictionaries(any_text, any_text, max_size=3) | json_value,
        },
    )


def manifest_bodies(world: World, manifests: list[bytes]) -> st.SearchStrategy[bytes]:
    def with_deep_array(pair: tuple[dict, int]) -> bytes:
        document, depth = pair
        # A valid-looking manifest carrying a deep array in a field of its own.
        text = json.dumps({**document, "x-deep": 0}).encode()
        return text.replace(b'"x-deep": 0', b'"x-deep": ' + deep_json(depth))

    def annotated(pair: tuple[bytes, dict]) -> bytes:
        # A manifest that is valid but for what its annotations hold (lone surrogates
        # included: JSON can escape them, UTF-8 cannot carry them).
        document, annotations = json.loads(pair[0]), pair[1]
        return json.dumps({**document, "annotations": annotations}).encode()

    return st.one_of(
        st.sampled_from(manifests),
        st.tuples(
            st.sampled_from(manifests), st.dictionaries(with_surrogates, with_surrogates, max_size=3)
        ).map(annotated),
        manifest_documents(world).map(lambda d: json.dumps(d).encode()),
        st.tuples(manifest_documents(world), st.sampled_from([60, 64, 65, 1000, 60_000])).map(
            with_deep_array
        ),
        st.sampled_from(
            [
                deep_json(60_000),
                b"{" + b'"a":{' * 30_000 + b"}" * 30_001,
                b'{"schemaVersion": 2, "size": ' + b"9" * 5000 + b"}",
                b'{"schemaVersion": 2e400}',
                b'"\\ud800"',
                b"\xff\xfe{\x00}\x00",
            ]
        ),
        st.binary(max_size=300),
    )


def chunk_bodies() -> st.SearchStrategy[list[bytes]]:
    """A request body as the pieces it arrives in (streamed, without Content-Length)."""
    return st.lists(st.binary(max_size=200), max_size=4)
