"""Upload capabilities: the credential an upload's ``Location`` carries to the upload service.

Clients never send the registry's ``Authorization`` header to another host, so when
the upload service lives on its own host (SKYPORT_UPLOAD_ENDPOINT), the ``Location``
that ``POST /v2/<name>/blobs/uploads/`` answers must authorize itself. It carries a
capability in the ``_capability`` query parameter, which clients keep when they append
``digest=`` (as they keep Distribution's ``_state``). A capability names one upload:

    1.<kid>.<expires_at>.<owner, base64url>.<mac, base64url>

where ``mac`` is HMAC-SHA256 over the version, key id, repository, upload id, owner
(the identity that started the upload; empty with auth off) and expiry. Repository and
upload id are not in the text: they come from the URL it is presented on, so a
capability verifies only on the URL it was made for. It expires with the upload
session (``expires_at``, a week by default: a 20 GiB layer on a slow link must finish).

The MAC key is not the token signing key: the upload service may check capabilities
but must not be able to mint registry tokens. It comes from SKYPORT_UPLOAD_KEY (the
value: ECS injects it from the secret) or SKYPORT_UPLOAD_KEY_SECRET (read from Secrets
Manager, cached, its previous version verifying too), each the key itself or JSON
``{"current", "previous"}`` to rotate by hand. A capability is a bearer secret for one
upload: it is never logged and never put in an error's detail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import Unauthorized

if TYPE_CHECKING:
    from ..config import Settings
    from ..storage.clients import AwsClients

# .keys (and through it the token and identity modules) is imported where keys are read,
# not here: the API's routes import this module for QUERY_PARAMETER, and the Lambda cold
# start should not pay for the rest (~6 ms) unless an upload endpoint is configured.

QUERY_PARAMETER = "_capability"
VERSION = "1"
# Keys shorter than this are refused at first use: a capability MAC is only as strong
# as its key, and a week-long bearer credential deserves a 256-bit one (32 random bytes
# base64-encoded are 44 characters; 32 is a floor, not a target).
MIN_KEY_LENGTH = 32
# Far above any real capability (an owner is at most a few hundred characters); checked
# before any parsing, so a huge value costs nothing.
MAX_LENGTH = 1024
_FORM = re.compile(
    r"1\.(?P<kid>[0-9a-f]{16})\.(?P<expires>[0-9]{1,12})\.(?P<owner>[A-Za-z0-9_-]{0,700})\.(?P<mac>[A-Za-z0-9_-]{43})",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class CapabilityKey:
    kid: str
    mac_key: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> CapabilityKey:
        if len(secret) < MIN_KEY_LENGTH:
            raise ValueError(f"the upload capability key must be at least {MIN_KEY_LENGTH} bytes")
        # Derived keys, so the stored secret never MACs anything directly, and the same
        # secret reused elsewhere (it must not be) would still give other MACs.
        mac_key = hmac.new(secret, b"skyport upload capability mac", hashlib.sha256).digest()
        kid = hmac.new(secret, b"skyport upload capability kid", hashlib.sha256).hexdigest()[:16]
        return cls(kid, mac_key)

    def __repr__(self) -> str:  # never the key, whatever prints this
        return f"CapabilityKey(kid={self.kid!r})"


@dataclass(frozen=True, slots=True)
class CapabilityKeys:
    current: CapabilityKey
    previous: CapabilityKey | None = None

    @classmethod
    def from_value(cls, value: str | bytes) -> CapabilityKeys:
        from .keys import key_from_value

        current, previous = key_from_value(value)
        return cls(
            CapabilityKey.from_secret(current), CapabilityKey.from_secret(previous) if previous else None
        )

    def find(self, kid: str) -> CapabilityKey | None:
        for key in (self.current, self.previous):
            if key is not None and hmac.compare_digest(key.kid, kid):
                return key
        return None


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """What a verified capability allows: this upload, of this repository, as ``owner``
    (None with auth off: the session has no owner)."""

    repository: str
    upload_id: str
    owner: str | None
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _payload(kid: str, repository: str, upload_id: str, owner: str, expires_at: int) -> bytes:
    # JSON: unambiguous whatever the fields hold (an upload id taken from a URL may hold
    # any character), and the version first, so a later format can never collide.
    return json.dumps(
        ["skyport-upload-capability", VERSION, kid, repository, upload_id, owner, expires_at],
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode("ascii")


def _refused(reason: str) -> Unauthorized:
    # The reason only: never the capability, which is a credential.
    return Unauthorized({"reason": reason}, message="the upload capability does not authorize this upload")


class Capabilities:
    """Mints (the registry API) and verifies (the upload service) upload capabilities.
    ``keys()`` gives the key ring; it is called on every use and caches as it likes."""

    def __init__(
        self,
        keys: Callable[[], CapabilityKeys],
        auth_enabled: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._auth_enabled = auth_enabled
        self._clock = clock

    def ready(self) -> None:
        """Loads the keys now: a service without them refuses to start (ValueError)."""
        self._keys()

    def mint(self, repository: str, upload_id: str, owner: str | None, expires_at: int) -> str:
        key = self._keys().current
        owner_text = owner or ""
        mac = hmac.new(
            key.mac_key, _payload(key.kid, repository, upload_id, owner_text, expires_at), hashlib.sha256
        ).digest()
        return ".".join((VERSION, key.kid, str(expires_at), _b64(owner_text.encode("utf-8")), _b64(mac)))

    def verify(self, capability: str | None, repository: str, upload_id: str) -> UploadGrant:
        """The grant of ``capability`` for this repository's upload, else UNAUTHORIZED:
        missing, malformed, forged, for another upload (the MAC binds both), or expired."""
        if not capability:
            raise _refused("missing")
        if len(capability) > MAX_LENGTH:
            raise _refused("malformed")
        match = _FORM.fullmatch(capability)
        if match is None:
            raise _refused("malformed")
        try:
            owner_bytes = _unb64(match["owner"])
            owner = owner_bytes.decode("utf-8")
            mac = _unb64(match["mac"])
        except (binascii.Error, ValueError):
            raise _refused("malformed") from None
        expires_at = int(match["expires"])
        key = self._keys().find(match["kid"])
        # An unknown key id is a forgery or a key retired by two rotations: either way the
        # same answer as a bad MAC.
        expected = (
            hmac.new(
                key.mac_key, _payload(key.kid, repository, upload_id, owner, expires_at), hashlib.sha256
            ).digest()
            if key is not None
            else b"\0" * 32
        )
        if key is None or not hmac.compare_digest(mac, expected):
            raise _refused("invalid")
        if expires_at <= self._clock():
            raise _refused("expired")
        if self._auth_enabled and not owner:
            # Auth on: every session has an owner, so an ownerless capability was made
            # by a registry with auth off (another deployment sharing the key): refused.
            raise _refused("invalid")
        return UploadGrant(repository, upload_id, owner or None, expires_at)


def capability_keys(settings: Settings, clients: AwsClients) -> Callable[[], CapabilityKeys]:
    """The key ring the settings name: SKYPORT_UPLOAD_KEY (the value itself), else the
    Secrets Manager secret SKYPORT_UPLOAD_KEY_SECRET (its current value, and its previous
    version verifying too), read on first use and again every ``VALUE_MAX_AGE`` seconds."""
    from .keys import VALUE_MAX_AGE, TtlCache, key_from_value, secret_value

    if settings.upload_key:
        ring = CapabilityKeys.from_value(settings.upload_key)
        return lambda: ring
    if settings.upload_key_secret:
        name = settings.upload_key_secret

        def read() -> CapabilityKeys:
            from botocore.exceptions import ClientError

            client: Any = clients.secretsmanager
            ring = CapabilityKeys.from_value(secret_value(client, name))
            if ring.previous is None:
                try:
                    previous = key_from_value(secret_value(client, name, "AWSPREVIOUS"))[0]
                except ClientError:
                    return ring  # never rotated: the previous key is optional
                ring = CapabilityKeys(ring.current, CapabilityKey.from_secret(previous))
            return ring

        cache = TtlCache(read, VALUE_MAX_AGE)
        return cache.get

    def unconfigured() -> CapabilityKeys:
        raise ValueError("upload capabilities need SKYPORT_UPLOAD_KEY or SKYPORT_UPLOAD_KEY_SECRET")

    return unconfigured
