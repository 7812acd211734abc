"""Key sources as the registry's settings name them, the cache in front of AWS, and key
loading off the event loop (skyport.concurrency)."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import httpx
from skyport.auth import tokens
from skyport.auth.keys import VALUE_MAX_AGE, TtlCache
from skyport.auth.service import AuthService
from skyport.auth.tokens import KeyRing, KeySource, SigningKey
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import basic, bearer, make_auth_settings


def test_the_registry_reads_the_key_from_the_parameter_its_settings_name(moto_endpoint, aws, template):
    name = f"/skyport/key-{secrets.token_hex(4)}"
    aws.ssm.put_parameter(Name=name, Type="SecureString", Value="k" * 40)
    settings = make_auth_settings(moto_endpoint, aws, template, signing_key_parameter=name)
    registry = Registry(settings, clients=aws)
    registry.identities.add_user("alice", "alice-password-1")
    with TestClient(create_app(registry)) as client:
        token = client.get("/auth/token", headers=basic("alice", "alice-password-1")).json()["token"]
        assert client.get("/v2/", headers=bearer(token)).status_code == 200
    key = SigningKey.from_secret(b"k" * 40)
    claims = tokens.decode(
        token,
        {key.kid: key}.get,
        audience=settings.token_service,
        issuer=settings.token_issuer,
        use=tokens.USE_ACCESS,
        now=time.time(),
    )
    assert claims["sub"] == "alice"


def test_values_from_aws_are_read_again_once_stale():
    now = [0.0]
    reads = []
    cache = TtlCache(lambda: reads.append(now[0]) or len(reads), VALUE_MAX_AGE, lambda: now[0])
    assert cache.get() == 1 and cache.get() == 1
    now[0] += VALUE_MAX_AGE - 1
    assert cache.get() == 1
    now[0] += 1
    assert cache.get() == 2 and reads == [0.0, VALUE_MAX_AGE]


class _SlowKeys(KeySource):
    """Keys from a source that takes its time (a slow Secrets Manager), until released."""

    def __init__(self) -> None:
        self.loading = threading.Event()
        self.release = threading.Event()

    def load(self) -> KeyRing:
        self.loading.set()
        self.release.wait(10)
        return KeyRing(SigningKey.generate())


def test_key_loading_does_not_hold_up_other_requests(auth_registry):
    keys = _SlowKeys()
    auth_registry.auth = AuthService(auth_registry.auth._store, auth_registry.settings, keys)
    app = create_app(auth_registry)  # under a server: several requests at once
    forged = tokens.encode({"sub": "alice"}, SigningKey.generate())

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            waiting = asyncio.create_task(client.get("/v2/_catalog", headers=bearer(forged)))
            assert await asyncio.get_running_loop().run_in_executor(None, keys.loading.wait, 10)
            # While the keys load, an anonymous request is answered.
            other = await client.get("/v2/_catalog")
            still_waiting = not waiting.done()
            keys.release.set()
            return other, still_waiting, await waiting

    other, still_waiting, refused = asyncio.run(scenario())
    assert other.status_code == 200 and other.json() == {"repositories": []}
    assert still_waiting
    assert refused.status_code == 401  # signed by a key the registry does not have
