"""Our SigV4 presigner (skyport.storage.presign) gives byte for byte the URL botocore's
generate_presigned_url gives, for the client configurations Skyport builds, and S3
(moto) serves the object at it."""

from __future__ import annotations

import datetime as dt
import os

import boto3
import botocore.auth
import botocore.session
import httpx
import pytest
from botocore.credentials import RefreshableCredentials
from oci import fetch
from skyport.config import Settings
from skyport.storage.clients import AwsClients
from skyport.storage.presign import MAX_EXPIRES, S3Presigner
from skyport.storage.s3 import S3ObjectStore

BUCKET = "skyport-blobs"
KEYS = [
    "blobs/sha256/ab/abcdef0123456789",
    "uploads/3f2a9c/part-00001",
    "a b/c+d=e&f?g#h",
    "per%cent/semi;colon,comma:colon@at$dollar!bang'quote(paren)*star",
    "tilde~dash-under_score.dot",
    "ünïcödé/日本語/emoji-🚀",
    "dir//double/slash/",
    "/leading-slash",
    "./dot/../dotdot",
]
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+abc/def=" * 8
PLUS_FIVE = dt.timezone(dt.timedelta(hours=5))
INSTANTS = [dt.datetime(2024, 2, 29, 23, 59, 59), dt.datetime(2031, 12, 31, 0, 0, 1)]


def _client(monkeypatch, region: str, endpoint: str | None, token: str | None):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEKEY123456")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    if token is None:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    else:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    return AwsClients(Settings(bucket=BUCKET, table="t", region=region, s3_endpoint=endpoint)).s3


def _botocore_url(monkeypatch, client, key: str, expires: int, now: dt.datetime) -> str:
    # botocore.auth signs at botocore.compat.get_current_datetime(), imported by name.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: now)
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=expires
    )


@pytest.mark.parametrize("token", [None, TOKEN], ids=["long-term", "session-token"])
@pytest.mark.parametrize(
    "endpoint",
    [None, "http://127.0.0.1:5000", "https://s3.example.test:8443"],
    ids=["aws-virtual", "custom-path", "custom-https-path"],
)
@pytest.mark.parametrize("region", REGIONS)
def test_same_url_as_botocore(monkeypatch, region, endpoint, token):
    client = _client(monkeypatch, region, endpoint, token)
    presigner = S3Presigner.for_client(client, BUCKET)
    assert presigner is not None
    for now in INSTANTS:
        for key in KEYS:
            for expires in (1, 1200, MAX_EXPIRES):
                expected = _botocore_url(monkeypatch, client, key, expires, now)
                assert presigner.presign_get(key, expires, now=now) == expected
                # an aware datetime names the same instant
                aware = now.replace(tzinfo=dt.UTC).astimezone(PLUS_FIVE)
                assert presigner.presign_get(key, expires, now=aware) == expected


@pytest.mark.parametrize("region", REGIONS)
def test_deployed_urls_name_the_regional_endpoint(monkeypatch, region):
    client = _client(monkeypatch, region, None, TOKEN)
    url = S3ObjectStore(client, BUCKET).presign_get("blobs/x", 60)
    assert httpx.URL(url).host == f"{BUCKET}.s3.{region}.amazonaws.com"
    assert url.startswith(f"https://{BUCKET}.s3.{region}.amazonaws.com/blobs/x?X-Amz-Algorithm=")
    assert "X-Amz-Security-Token=" in url and "X-Amz-SignedHeaders=host" in url


def test_object_store_uses_it_with_the_current_time(monkeypatch):
    client = _client(monkeypatch, "eu-west-1", None, TOKEN)
    now = dt.datetime(2030, 6, 1, 12, 0, 0)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: now)

    class FrozenClock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return now.replace(tzinfo=dt.UTC).astimezone(tz)

    monkeypatch.setattr("skyport.storage.presign.datetime", FrozenClock)
    store = S3ObjectStore(client, BUCKET)
    assert store._presigner is not None
    assert store.presign_get("blobs/k", 1200) == client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "blobs/k"}, ExpiresIn=1200
    )


def test_signing_key_is_derived_once_a_day(monkeypatch):
    presigner = S3Presigner.for_client(_client(monkeypatch, "us-east-1", None, None), BUCKET)
    day = dt.datetime(2030, 1, 1, 0, 0, 0)
    presigner.presign_get("k", 60, now=day)
    first = presigner._scope
    presigner.presign_get("k", 60, now=day + dt.timedelta(hours=23, minutes=59))
    assert presigner._scope is first
    presigner.presign_get("k", 60, now=day + dt.timedelta(days=1))
    assert presigner._scope is not first and presigner._scope.date == "20300102"
    assert presigner._scope.signing_key != first.signing_key


def test_refreshed_credentials_are_used(monkeypatch):
    """Temporary credentials are frozen on every call: once botocore refreshes them,
    the next URL carries the new ones, as botocore's own would."""
    now = dt.datetime.now(dt.UTC)
    issued = {
        "access_key": "ASIAFIRST",
        "secret_key": "first-secret",
        "token": "first-token",
        "expiry_time": (now + dt.timedelta(hours=1)).isoformat(),
    }
    credentials = RefreshableCredentials.create_from_metadata(
        dict(issued), refresh_using=lambda: dict(issued), method="test"
    )
    core = botocore.session.Session()
    core._credentials = credentials
    clients = AwsClients(Settings(bucket=BUCKET, table="t", region="eu-west-1"))
    clients.__dict__["_session"] = boto3.session.Session(botocore_session=core, region_name="eu-west-1")
    client = clients.s3
    presigner = S3Presigner.for_client(client, BUCKET)
    assert "X-Amz-Credential=ASIAFIRST%2F" in presigner.presign_get("k", 60)

    issued.update(access_key="ASIASECOND", secret_key="second-secret", token="second/token+=")
    credentials._expiry_time = now - dt.timedelta(seconds=1)  # expired: next use refreshes
    instant = dt.datetime(2030, 1, 1, 0, 0, 0)
    url = presigner.presign_get("k", 60, now=instant)
    assert "X-Amz-Credential=ASIASECOND%2F" in url
    assert "X-Amz-Security-Token=second%2Ftoken%2B%3D" in url
    assert url == _botocore_url(monkeypatch, client, "k", 60, instant)


@pytest.mark.parametrize("expires", [0, -1, MAX_EXPIRES + 1])
def test_expiry_is_bounded(monkeypatch, expires):
    presigner = S3Presigner.for_client(_client(monkeypatch, "us-east-1", None, None), BUCKET)
    with pytest.raises(ValueError):
        presigner.presign_get("k", expires)


@pytest.mark.parametrize("bucket", ["dotted.bucket.name", "Upper", "ab", "dir--usw2-az1--x-s3"])
def test_configurations_we_do_not_reproduce_fall_back_to_botocore(monkeypatch, bucket):
    client = _client(monkeypatch, "us-east-1", None, None)
    assert S3Presigner.for_client(client, bucket) is None


def test_fips_and_accelerate_fall_back_to_botocore(monkeypatch):
    from botocore.config import Config

    _client(monkeypatch, "us-east-1", None, None)
    session = boto3.session.Session(region_name="us-east-1")
    for config in (
        Config(signature_version="s3v4", use_fips_endpoint=True),
        Config(signature_version="s3v4", s3={"use_accelerate_endpoint": True}),
        Config(signature_version="s3v4", s3={"use_dualstack_endpoint": True}),
        Config(signature_version="s3v4", s3={"addressing_style": "auto"}),
    ):
        assert S3Presigner.for_client(session.client("s3", config=config), BUCKET) is None
    path_style = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    prefixed = session.client("s3", endpoint_url="http://127.0.0.1:5000/prefix", config=path_style)
    assert S3Presigner.for_client(prefixed, BUCKET) is None


def test_the_url_fetches_the_object_from_s3(registry):
    """The path and host reach the object. (moto does not check signatures: the
    equality with botocore above is what vouches for them.)"""
    settings, s3 = registry.settings, registry.clients.s3
    store = S3ObjectStore(s3, settings.bucket)
    assert store._presigner is not None  # our presigner, not botocore's
    for number, key in enumerate(KEYS[:7]):
        data = os.urandom(1000 + number)
        s3.put_object(Bucket=settings.bucket, Key=key, Body=data)
        url = store.presign_get(key, 60)
        assert fetch(url) == data, key


# --------------------------------------------------------------------------- the fallback
# The presigner reads botocore internals (the client's request signer and its
# credentials). A botocore where they are missing or of another shape, or where the
# client signs differently, must get botocore's own URL, never an error or a wrong URL.


class PublicOnly:
    """An S3 client with botocore's public surface and none of its private attributes."""

    def __init__(self, client):
        self._wrapped = client

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._wrapped, name)


class SignerWithout:
    """botocore's request signer with one attribute gone (as a botocore that renamed it
    would be): its own methods, bound to the real signer, still work."""

    def __init__(self, signer, hidden: str):
        self._signer, self._hidden = signer, hidden

    def __getattr__(self, name):
        if name == self._hidden:
            raise AttributeError(name)
        return getattr(self._signer, name)


def _fallback_store(registry, monkeypatch, shape: str):
    s3 = registry.clients.s3
    if shape == "no-private-attributes":
        assert S3Presigner.for_client(s3, registry.settings.bucket) is not None  # unwrapped: ours
        return S3ObjectStore(PublicOnly(s3), registry.settings.bucket), s3
    # A client of its own: the session's shared one stays as it is.
    client = AwsClients(registry.settings).s3
    assert S3Presigner.for_client(client, registry.settings.bucket) is not None  # before: ours
    hidden = shape.removeprefix("signer-without-")
    monkeypatch.setattr(client, "_request_signer", SignerWithout(client._request_signer, hidden))
    return S3ObjectStore(client, registry.settings.bucket), client


@pytest.mark.parametrize(
    "shape",
    [
        "no-private-attributes",
        "signer-without-_credentials",
        "signer-without-signature_version",
        "signer-without-signing_name",
    ],
)
def test_other_internals_fall_back_to_botocore(registry, monkeypatch, shape):
    store, client = _fallback_store(registry, monkeypatch, shape)
    assert store._presigner is None
    key = "blobs/fallback/a b+ü"
    data = os.urandom(1500)
    registry.clients.s3.put_object(Bucket=registry.settings.bucket, Key=key, Body=data)
    url = store.presign_get(key, 60)
    assert fetch(url) == data
    # and it is botocore's URL, signature included (moto does not check signatures)
    instant = dt.datetime(2030, 3, 4, 5, 6, 7)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: instant)
    assert store.presign_get(key, 60) == client.generate_presigned_url(
        "get_object", Params={"Bucket": registry.settings.bucket, "Key": key}, ExpiresIn=60
    )


def test_a_client_that_signs_differently_falls_back_to_botocore(registry, monkeypatch):
    """The first URL is compared with botocore's: a client whose requests something else
    rewrites (here an event handler that prefixes every key) is not signed by us."""
    client = AwsClients(registry.settings).s3

    def prefixed(params, **kwargs):
        params["Key"] = f"tenant-a/{params['Key']}"

    client.meta.events.register("before-parameter-build.s3.GetObject", prefixed)
    store = S3ObjectStore(client, registry.settings.bucket)
    assert store._presigner is None
    data = os.urandom(700)
    registry.clients.s3.put_object(Bucket=registry.settings.bucket, Key="tenant-a/blobs/k", Body=data)
    assert fetch(store.presign_get("blobs/k", 60)) == data
