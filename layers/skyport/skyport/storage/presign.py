"""SigV4 query-string presigning of S3 GetObject, stdlib only.

botocore's generate_presigned_url spends ~0.35 ms per URL building a whole
request (serializer, endpoint ruleset, event hooks) to end up with one HMAC
chain. Every GET blob answers with such a URL, so we compute it directly and
produce exactly the URL botocore would (tests/unit/test_presign.py compares
them byte for byte), for the client configurations Skyport uses:

* a custom endpoint with path-style addressing (moto, `make run`):
  ``{endpoint}/{bucket}/{key}``;
* AWS with virtual-hosted addressing and the regional endpoint, us-east-1
  included (storage/clients.py): ``https://{bucket}.s3.{region}.amazonaws.com/{key}``.

Any other configuration (FIPS, dual-stack, accelerate, non-DNS bucket names,
an endpoint with a path, no credentials, ...) gets no S3Presigner, and the
caller keeps using botocore.

The credentials are read from botocore internals (the client's request signer):
botocore has no public way to them from a client. Every read of the client is
made in ``for_client`` and guarded: an internal that is missing or of another
shape, or a first URL that is not byte for byte the one botocore gives for the
same instant (a botocore that signs differently), also means no S3Presigner, so
the caller falls back to botocore's generate_presigned_url, which always works.

References (AWS documentation):
  [QS]  Amazon S3 API Reference, "Authenticating Requests: Using Query Parameters
        (AWS Signature Version 4)" (sigv4-query-string-auth.html).
  [CR]  IAM User Guide, "Create a signed AWS API request", Step 1: "Create a
        canonical request" (create-signed-request.html#create-canonical-request).
  [STS] Same page, Step 3: "Create a string to sign".
  [KEY] Same page, Step 4: "Calculate the signature" (signing key derivation:
        kDate, kRegion, kService, kSigning).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
# [QS] "X-Amz-Expires ... Minimum value of 1. Maximum value of 604800 (seven days)."
MAX_EXPIRES = 604800
# [QS] "You don't include a payload hash in the Canonical Request, because when you
# create a presigned URL, you don't know the payload content ... use a constant
# string UNSIGNED-PAYLOAD."
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# Only the host header is signed, as botocore does for a presigned GetObject.
SIGNED_HEADERS = "host"

# Bucket names botocore puts in the host name (aws.isVirtualHostableS3Bucket, no
# dots allowed over https); directory buckets (--x-s3) have their own endpoints.
_VIRTUAL_HOSTABLE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What for_client signs once, with botocore and with us, to compare: a key that needs
# encoding ([CR]), never fetched (presigning makes no request).
_CHECK_KEY = "presign-check/a b+c=d/ü~"
_CHECK_EXPIRES = 60


def _quote(value: str, safe: str = "") -> str:
    # [CR] URI-encode: every byte except the unreserved characters A-Z a-z 0-9
    # '-' '.' '_' '~' is %XX-encoded, hex in upper case; UTF-8 first. Python's
    # quote never encodes the unreserved characters and uses upper-case hex.
    return quote(value.encode("utf-8"), safe=safe)


def encode_key(key: str) -> str:
    """[CR] CanonicalURI for S3: the object key URI-encoded, '/' kept as is (S3
    paths are neither normalized nor double-encoded)."""
    return _quote(key, safe="/~")


class _Scope(NamedTuple):
    """What stays the same for one set of credentials on one day."""

    access_key: str
    secret_key: str
    token: str | None
    date: str
    signing_key: bytes
    # Already URI-encoded query parameters that do not change per URL.
    credential: str
    token_param: str


class S3Presigner:
    """Presigned GetObject URLs for one bucket, equal to botocore's for this client."""

    def __init__(self, credentials: Any, region: str, base_url: str, host: str) -> None:
        # credentials: botocore Credentials (or RefreshableCredentials); frozen on every
        # call so refreshed temporary credentials are used as soon as botocore has them.
        self._credentials = credentials
        self._region = region
        self._base_url = base_url  # scheme://authority[/bucket], no trailing slash
        self._host = host  # the Host header value botocore signs
        self._path_prefix = urlsplit(base_url).path  # "" (virtual) or "/bucket" (path)
        self._scope: _Scope | None = None

    @classmethod
    def for_client(cls, client: Any, bucket: str) -> S3Presigner | None:
        """A presigner matching ``client.generate_presigned_url`` for ``bucket``, or None
        when the client is configured in a way we do not reproduce, or its internals
        are not what we read (the caller then uses botocore's generate_presigned_url)."""
        try:
            presigner = cls._from_client(client, bucket)
            if presigner is None or not presigner._agrees_with(client, bucket):
                return None
            return presigner
        except Exception:  # any botocore other than the one read above: its own presigning
            return None

    @classmethod
    def _from_client(cls, client: Any, bucket: str) -> S3Presigner | None:
        meta = client.meta
        config = meta.config
        signer = client._request_signer  # internal: botocore keeps the credentials there
        credentials = signer._credentials  # internal, a botocore Credentials (or None)
        region = meta.region_name
        endpoint = meta.endpoint_url
        s3 = config.s3 or {}
        if (
            credentials is None
            or not callable(getattr(credentials, "get_frozen_credentials", None))
            or not isinstance(region, str)
            or not region
            or not isinstance(endpoint, str)
            or not isinstance(s3, dict)
            or config.signature_version != "s3v4"
            or signer.signature_version != "s3v4"
            or signer.signing_name != SERVICE
            or s3.get("use_accelerate_endpoint")
            or s3.get("use_dualstack_endpoint")
            or getattr(config, "use_dualstack_endpoint", None)
            or getattr(config, "use_fips_endpoint", None)
        ):
            return None
        parts = urlsplit(endpoint)
        if (
            parts.scheme not in _DEFAULT_PORTS
            or parts.path not in ("", "/")
            or parts.query
            or parts.username
            or parts.password
            or not parts.hostname
            or "[" in parts.netloc
        ):
            return None
        style = s3.get("addressing_style")
        if style == "path":
            if not bucket or bucket.endswith("--x-s3"):
                return None
            base_url = f"{parts.scheme}://{parts.netloc}/{_quote(bucket)}"
            host = parts.hostname
            if parts.port is not None and parts.port != _DEFAULT_PORTS[parts.scheme]:
                host = f"{host}:{parts.port}"
            return cls(credentials, region, base_url, host)
        if (
            style == "virtual"
            and endpoint.rstrip("/") == f"https://s3.{region}.amazonaws.com"
            and _VIRTUAL_HOSTABLE.fullmatch(bucket)
            and not bucket.endswith("--x-s3")
        ):
            host = f"{bucket}.s3.{region}.amazonaws.com"
            return cls(credentials, region, f"https://{host}", host)
        return None

    def _agrees_with(self, client: Any, bucket: str) -> bool:
        """Sign one URL with botocore and with us at botocore's instant: equal, byte for
        byte, or we do not sign for this client. Costs one botocore presign per client."""
        expected = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": _CHECK_KEY}, ExpiresIn=_CHECK_EXPIRES
        )
        # [QS] X-Amz-Date: the instant botocore signed at.
        stamp = parse_qs(urlsplit(expected).query)["X-Amz-Date"][0]
        now = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return self.presign_get(_CHECK_KEY, _CHECK_EXPIRES, now=now) == expected

    def _scope_for(self, access_key: str, secret_key: str, token: str | None, date: str) -> _Scope:
        scope = self._scope
        if (
            scope is not None
            and scope.date == date
            and scope.access_key == access_key
            and scope.secret_key == secret_key
            and scope.token == token
        ):
            return scope
        # [KEY] kSecret = "AWS4" + secret; kDate = HMAC(kSecret, yyyymmdd);
        # kRegion = HMAC(kDate, region); kService = HMAC(kRegion, "s3");
        # kSigning = HMAC(kService, "aws4_request"). It depends only on the secret, the
        # date and the region (one per presigner), so it is derived once a day, or again
        # when the credentials change.
        key = hmac.digest(f"AWS4{secret_key}".encode(), date.encode(), "sha256")
        for part in (self._region, SERVICE, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        credential = _quote(f"{access_key}/{date}/{self._region}/{SERVICE}/aws4_request")
        # [QS] With temporary credentials (Lambda's role), X-Amz-Security-Token carries the
        # session token; it is part of the canonical query string, hence signed.
        token_param = f"&X-Amz-Security-Token={_quote(token)}" if token is not None else ""
        scope = _Scope(access_key, secret_key, token, date, key, credential, token_param)
        self._scope = scope  # one tuple assignment: safe to race, the loser recomputes
        return scope

    def presign_get(self, key: str, expires_in: int, now: datetime | None = None) -> str:
        if not isinstance(expires_in, int) or not 1 <= expires_in <= MAX_EXPIRES:
            raise ValueError(f"X-Amz-Expires must be 1..{MAX_EXPIRES} seconds, not {expires_in!r}")
        if not key:
            raise ValueError("an S3 object key cannot be empty")
        frozen = self._credentials.get_frozen_credentials()
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is not None:  # a naive ``now`` is taken as UTC, as botocore's clock is
            now = now.astimezone(UTC)
        # [QS] X-Amz-Date: ISO 8601 basic format, UTC: yyyyMMddTHHmmssZ.
        timestamp = now.strftime("%Y%m%dT%H%M%SZ")
        date = timestamp[:8]
        scope = self._scope_for(frozen.access_key, frozen.secret_key, frozen.token, date)
        encoded_key = encode_key(key)
        path = f"{self._path_prefix}/{encoded_key}"
        # [CR] CanonicalQueryString: parameters sorted by (encoded) name, names and
        # values URI-encoded; X-Amz-Signature itself is not part of it ([QS]).
        # "X-Amz-Security-Token" < "X-Amz-SignedHeaders" ('c' < 'g').
        common = (
            f"X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={scope.credential}"
            f"&X-Amz-Date={timestamp}&X-Amz-Expires={expires_in}"
        )
        canonical_query = f"{common}{scope.token_param}&X-Amz-SignedHeaders={SIGNED_HEADERS}"
        # [CR] CanonicalRequest = Method \n CanonicalURI \n CanonicalQueryString \n
        # CanonicalHeaders (each "name:value\n") \n SignedHeaders \n HashedPayload.
        canonical_request = (
            f"GET\n{path}\n{canonical_query}\nhost:{self._host}\n\n{SIGNED_HEADERS}\n{UNSIGNED_PAYLOAD}"
        )
        # [STS] StringToSign = Algorithm \n RequestDateTime \n CredentialScope \n
        # Hex(SHA256(CanonicalRequest)).
        credential_scope = f"{date}/{self._region}/{SERVICE}/aws4_request"
        string_to_sign = (
            f"{ALGORITHM}\n{timestamp}\n{credential_scope}\n"
            f"{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        # [KEY] Signature = Hex(HMAC-SHA256(kSigning, StringToSign)).
        signature = hmac.digest(scope.signing_key, string_to_sign.encode(), "sha256").hex()
        # The URL lists the parameters in botocore's order (the token after
        # SignedHeaders), X-Amz-Signature last; the order in the URL does not matter to S3.
        return (
            f"{self._base_url}/{encoded_key}?{common}&X-Amz-SignedHeaders={SIGNED_HEADERS}"
            f"{scope.token_param}&X-Amz-Signature={signature}"
        )
