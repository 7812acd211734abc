"""Auth as deployed: keys from Secrets Manager or SSM, the first
admin bootstrapped from its secret, the Lambda handler behind the local API Gateway;
and nothing secret in logs, metrics or error bodies."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import replace

import pytest
from oci import assert_error, push_blob, sha256
from skyport.auth.keys import ParameterStoreKeys, SecretsManagerKeys
from skyport.config import Settings
from skyport.registry import Registry
from skyport_api.app import create_app
from skyport_api.auth import REQUIREMENTS
from skyport_api.lambda_adapter import lambda_handler
from skyport_cli.gateway import LambdaGateway
from starlette.testclient import TestClient

from .conftest import REGION, basic, bearer, make_auth_settings


def test_settings_from_the_environment():
    env = {"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t"}
    assert Settings.from_env(env).auth == "off"
    settings = Settings.from_env(
        {
            **env,
            "SKYPORT_AUTH": "ON",
            "SKYPORT_TOKEN_TTL": "5",
            "SKYPORT_SIGNING_KEY_SECRET": "arn:key",
            "SKYPORT_ADMIN_SECRET": "adm",
        }
    )
    assert settings.auth_enabled and settings.token_ttl_seconds == 60  # the token spec's minimum
    assert (settings.signing_key_secret, settings.admin_secret) == ("arn:key", "adm")
    with pytest.raises(ValueError):
        Settings.from_env({**env, "SKYPORT_AUTH": "maybe"})


def test_every_route_has_a_requirement(auth_registry):
    """A route added without a line in auth.REQUIREMENTS would be refused to all but admins:
    this keeps the table complete."""
    app = create_app(auth_registry)
    missing = []
    for route in app.routes:
        for method in getattr(route, "methods", None) or []:
            method = "GET" if method == "HEAD" else method
            if route.path != "/auth/token" and (method, route.path) not in REQUIREMENTS:
                missing.append((method, route.path))
    assert missing == []


def test_auth_off_installs_nothing(registry):
    app = create_app(registry)
    assert not any(getattr(r, "path", "") == "/auth/token" for r in app.routes)
    assert all(not getattr(r, "dependencies", None) for r in app.routes)


def test_keys_from_secrets_manager_survive_a_rotation(aws):
    client = aws.secretsmanager
    name = f"skyport-key-{secrets.token_hex(4)}"
    client.create_secret(Name=name, SecretString="a" * 64)
    keys = SecretsManagerKeys(name, lambda: client)
    first = keys.load()
    assert first.current.secret == b"a" * 64 and first.previous is None
    client.put_secret_value(SecretId=name, SecretString="b" * 64)  # the rotation
    rotated = SecretsManagerKeys(name, lambda: client).load()  # a cold instance
    assert rotated.current.secret == b"b" * 64 and rotated.previous == first.current


def test_keys_from_ssm_parameter(aws):
    client = aws.ssm
    name = f"/skyport/key-{secrets.token_hex(4)}"
    client.put_parameter(
        Name=name,
        Type="SecureString",
        Value=json.dumps({"current": "c" * 40, "previous": "p" * 40}),
    )
    ring = ParameterStoreKeys(name, lambda: client).load()
    assert ring.current.secret == b"c" * 40 and ring.previous.secret == b"p" * 40


@pytest.fixture
def deployed(moto_endpoint, aws, template):
    """The Lambda handler behind the local API Gateway, configured as template.yaml does:
    auth on, the signing key and the first admin in Secrets Manager."""
    sm = aws.secretsmanager
    suffix = secrets.token_hex(4)
    key_secret, admin_secret = f"skyport-key-{suffix}", f"skyport-admin-{suffix}"
    sm.create_secret(Name=key_secret, SecretString=secrets.token_urlsafe(48))
    admin_password = secrets.token_urlsafe(24)
    sm.create_secret(
        Name=admin_secret,
        SecretString=json.dumps({"username": "admin", "password": admin_password}),
    )
    settings = make_auth_settings(
        moto_endpoint,
        aws,
        template,
        signing_key_secret=key_secret,
        admin_secret=admin_secret,
        max_request_body=4706304,
    )
    registry = Registry(settings, clients=aws)
    gateway = LambdaGateway(lambda_handler(registry), region=REGION)
    with TestClient(gateway, follow_redirects=False) as client:
        yield (
            client,
            registry,
            admin_password,
            sm.get_secret_value(SecretId=key_secret)["SecretString"],
        )


def test_first_admin_logs_in_through_the_lambda_handler(deployed):
    client, registry, admin_password, _ = deployed
    response = client.get("/v2/")
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="http://testserver/auth/token"')
    token = client.get(
        "/auth/token",
        params={"scope": "repository:any/repo:pull,push"},
        headers=basic("admin", admin_password),
    ).json()["token"]
    response = client.post("/v2/any/repo/blobs/uploads/", headers=bearer(token))
    assert response.status_code == 202, response.text
    assert registry.auth.identity("admin").admin


def test_nothing_secret_reaches_logs_metrics_or_error_bodies(deployed, capfd, caplog):
    client, registry, admin_password, signing_key = deployed
    caplog.set_level("INFO")  # the deployed level (POWERTOOLS_LOG_LEVEL, template.yaml)
    robot, robot_secret = registry.identities.add_robot("ci")
    registry.identities.grant("team/*", robot.name, ["push"])
    bodies = []

    def call(method, path, **kwargs):
        response = client.request(method, path, **kwargs)
        bodies.append(response.text + json.dumps(dict(response.headers)))
        return response

    issued = call(
        "GET",
        "/auth/token",
        params={"scope": "repository:team/app:pull,push", "offline_token": "true"},
        headers=basic(robot.name, robot_secret),
    ).json()
    refreshed = call(
        "POST",
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
    ).json()
    call(
        "POST",
        "/auth/token",
        data={"grant_type": "password", "username": "admin", "password": admin_password},
    )
    wrong = "wrong-" + admin_password
    call(
        "POST",
        "/auth/token",
        data={"grant_type": "password", "username": "admin", "password": wrong},
    )
    call("GET", "/v2/", headers=basic("admin", wrong))
    call("GET", "/v2/team/app/tags/list", headers=bearer(issued["token"] + "x"))
    call("GET", f"/v2/team/app/tags/list?token={issued['token']}", headers=bearer(issued["token"]))
    digest = push_blob(_WithHeaders(client, bearer(issued["token"])), "team/app", b"data", mode="post")
    location = call("GET", f"/v2/team/app/blobs/{digest}", headers=bearer(issued["token"])).headers[
        "location"
    ]
    call("GET", "/v2/other/app/tags/list", headers=basic(robot.name, robot_secret))

    out, err = capfd.readouterr()
    # Everything the server side logged (httpx's records are this test's client talking).
    logged = (
        out
        + err
        + "\n".join(
            r.getMessage() + str(r.__dict__) for r in caplog.records if not r.name.startswith("httpx")
        )
    )
    assert "duration_ms" in logged and "/v2/team/app/tags/list" in logged  # the access log is there
    secrets_ = {
        "admin password": admin_password,
        "wrong password": wrong,
        "robot secret": robot_secret,
        "access token": issued["token"],
        "refresh token": issued["refresh_token"],
        "refreshed token": refreshed["access_token"],
        "signing key": signing_key,
        "basic credentials": base64.b64encode(f"{robot.name}:{robot_secret}".encode()).decode(),
        "presigned signature": location.split("X-Amz-Signature=")[1][:40],
    }
    for what, value in secrets_.items():
        assert value not in logged, f"the {what} was logged"
    for what in (
        "admin password",
        "wrong password",
        "robot secret",
        "signing key",
        "basic credentials",
    ):
        assert all(secrets_[what] not in body for body in bodies), f"the {what} was in a response"


def test_presigned_urls_are_short_lived(deployed):
    client, registry, admin_password, _ = deployed
    headers = basic("admin", admin_password)
    digest = push_blob(_WithHeaders(client, headers), "team/app", b"bytes", mode="post")
    location = client.get(f"/v2/team/app/blobs/{digest}", headers=headers).headers["location"]
    assert f"X-Amz-Expires={registry.settings.presign_expiry_seconds}" in location
    assert registry.settings.presign_expiry_seconds <= 3600
    assert sha256(b"bytes") == digest


def test_the_template_turns_auth_on_with_secrets(template):
    env = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert template["Parameters"]["Auth"]["Default"] == "on"
    assert env["SKYPORT_AUTH"] == {"Fn::If": ["AuthOff", "off", "on"]}
    assert env["SKYPORT_SIGNING_KEY_SECRET"] == {"Ref": "SigningKeySecret"}
    assert "AdminSecretName" in template["Parameters"] and "SKYPORT_ADMIN_SECRET" in env
    # Local runs that read the function's environment keep auth off unless asked.
    from skyport_cli.stack import function_environment

    assert "SKYPORT_AUTH" not in function_environment(template)


class _WithHeaders:
    def __init__(self, client, headers):
        self._client, self._headers = client, headers

    def post(self, url, **kwargs):
        return self._client.post(url, headers={**self._headers, **kwargs.pop("headers", {})}, **kwargs)

    put = patch = post


__all__ = ["replace"]
