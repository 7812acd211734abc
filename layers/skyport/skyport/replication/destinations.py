"""Where a rule replicates to: any OCI registry, or another Skyport deployment.

``http(s)://host[:port][/prefix]`` — any registry speaking the distribution API (Distribution,
zot, Harbor, ECR, another Skyport through its API). Repository ``team/app`` goes to
``prefix/team/app`` (or ``team/app`` without a prefix). Blobs only when missing (HEAD),
read from the source's S3 object in 1 MiB pieces and sent in a chunked upload
(``distribution_client.upload_blob``: at most one chunk, 8 MiB or the size the registry's
``OCI-Chunk-Min-Length`` asks, in memory); then manifests, children before parents, then
the tag. Credentials: the rule's secret (Basic, or the token flow a Bearer challenge asks).

``skyport://BUCKET/TABLE?region=R[&endpoint=URL][&role=ARN]`` — another Skyport, in another
region or account, by its storage rather than its API: blobs are copied server-side, S3 to
S3 (CopyObject; UploadPartCopy above 5 GiB), only when the destination holds no blob of
that digest (else it is linked, as a mount); manifests and tags are written through the
destination's own core services (a ``Registry`` on its settings), so its invariants hold
(a manifest only after everything it references). ``endpoint`` names an S3 and DynamoDB
endpoint other than AWS (moto, locally); ``role`` an IAM role assumed with STS (temporary
credentials, refreshed before they expire) for a destination in another account. The
server-side copy reads the source bucket with the destination's credentials: in another
account, the source bucket's policy must let that role GetObject.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import urllib3

from .. import media_types
from ..config import Settings
from ..distribution_client import RegistryClient, RegistryClientError, new_pool
from ..errors import ManifestUnknown
from ..storage import keys
from ..storage.clients import AwsClients
from ..storage.ports import BlobRecord, ReplicationRule, StorageError
from .rules import SKYPORT_SCHEME, skyport_destination

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..registry import Registry

ACCEPT = tuple(sorted(media_types.MANIFESTS))


class DestinationError(Exception):
    """The destination refused or could not be reached; the message is the reason shown in
    the rule's status and the dead-letter queue (never a secret)."""


class Source(Protocol):
    """What a destination reads of the source registry."""

    bucket: str

    def record(self, repository: str, digest: str) -> BlobRecord: ...
    def chunks(self, repository: str, digest: str) -> Iterator[bytes]: ...
    def has_manifest(self, repository: str, digest: str) -> bool: ...


class Destination(Protocol):
    def probe(self) -> None:
        """Raise DestinationError when the destination cannot be reached."""
        ...

    def has_manifest(self, repository: str, digest: str) -> bool: ...
    def ensure_blob(self, repository: str, digest: str, size: int, source: Source) -> None: ...
    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> None: ...
    def delete_tag(self, repository: str, tag: str, source: Source) -> None:
        """Nothing when the destination has no such tag."""
        ...

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Nothing when the destination has no such manifest."""
        ...


def open_destination(rule: ReplicationRule, registry: Registry) -> Destination:
    """The destination of ``rule``, its credentials read from Secrets Manager when it has
    some (``settings.hook_secrets + "replication/<rule id>"``)."""
    if urlsplit(rule.destination).scheme == SKYPORT_SCHEME:
        return SkyportDestination(rule.destination, registry.clients)
    credentials = read_credentials(registry, rule.id) if rule.credentials else None
    return OciDestination(rule.destination, credentials, insecure=rule.insecure)


def secret_name(settings: Settings, rule_id: str) -> str:
    return f"{settings.hook_secrets}replication/{rule_id}"


def read_credentials(registry: Registry, rule_id: str) -> tuple[str, str]:
    name = secret_name(registry.settings, rule_id)
    try:
        value = registry.clients.secretsmanager.get_secret_value(SecretId=name)["SecretString"]
        document = json.loads(value)
        return str(document["username"]), str(document["password"])
    except Exception as error:  # noqa: BLE001 - any failure: the reason, never the value
        raise DestinationError(
            f"the rule's credentials could not be read from Secrets Manager ({name}): {type(error).__name__}"
        ) from None


# --- any OCI registry --------------------------------------------------------------------


class OciDestination:
    def __init__(self, url: str, credentials: tuple[str, str] | None, *, insecure: bool = False) -> None:
        parts = urlsplit(url)
        self.url = url
        self._scheme = parts.scheme  # http only with --insecure (or to loopback): rules.py
        self._host = parts.netloc
        self._prefix = parts.path.strip("/")
        self._credentials = credentials
        self._verify_tls = not insecure
        self._http = new_pool(8, verify_tls=self._verify_tls, outbound=True)
        self._clients: dict[str, RegistryClient] = {}

    def _repository(self, repository: str) -> str:
        return f"{self._prefix}/{repository}" if self._prefix else repository

    def _client(self, repository: str) -> RegistryClient:
        name = self._repository(repository)
        client = self._clients.get(name)
        if client is None:
            client = RegistryClient(
                self._host,
                name,
                credentials=self._credentials,
                scheme=self._scheme,
                http=self._http,
                credentials_hint="the rule's --username and --password-env, `skyport replication add`",
            )
            self._call(lambda: client.login("pull,push"))
            self._clients[name] = client
        return client

    def _call(self, action: Any) -> Any:
        """Run one exchange with the registry; transport failures become DestinationError."""
        try:
            return action()
        except RegistryClientError as error:
            raise DestinationError(f"{self._host}: {error}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise DestinationError(f"{self._host} unreachable: {type(error).__name__}: {error}") from None

    def probe(self) -> None:
        """GET /v2/ (distribution-spec "Determining support"): 200, or 401 with a challenge,
        is a registry; anything else is not one we can replicate to."""

        def ask() -> None:
            response = self._http.request(
                "GET", f"{self._scheme}://{self._host}/v2/", redirect=False, timeout=urllib3.Timeout(5, 10)
            )
            response.drain_conn()
            challenged = response.status == 401 and response.headers.get("WWW-Authenticate")
            if response.status != 200 and not challenged:
                raise DestinationError(
                    f"{self._scheme}://{self._host}/v2/ answered HTTP {response.status}: not an OCI registry "
                    "(expected 200, or 401 with a WWW-Authenticate challenge)"
                )

        self._call(ask)

    def has_manifest(self, repository: str, digest: str) -> bool:
        client = self._client(repository)
        return self._call(lambda: client.manifest_digest(digest, ACCEPT)) is not None

    def ensure_blob(self, repository: str, digest: str, size: int, source: Source) -> None:
        client = self._client(repository)
        if self._call(lambda: client.blob_exists(digest)):
            return
        sent = self._call(lambda: client.upload_blob(digest, source.chunks(repository, digest)))
        if sent != size:
            raise DestinationError(f"blob {digest}: {sent} bytes sent, the manifest says {size}")

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> None:
        client = self._client(repository)
        self._call(lambda: client.put_manifest(reference, media_type, body))

    def delete_tag(self, repository: str, tag: str, source: Source) -> None:
        client = self._client(repository)
        try:
            client.delete_manifest(tag)
            return
        except RegistryClientError as refused:
            if refused.status not in (400, 405):
                raise DestinationError(f"{self._host}: {refused}") from None
            # distribution-spec 1.1 lets a registry refuse deleting a tag alone (Distribution
            # 2.8 answers 400 DIGEST_INVALID). Then the tag goes with its manifest, but only
            # when the source no longer has that manifest: else other tags would go too.
            digest = self._call(lambda: client.manifest_digest(tag, ACCEPT))
            if digest is None:
                return  # gone already (its manifest was deleted)
            if source.has_manifest(repository, digest):
                raise DestinationError(
                    f"{self._host}: the tag {tag} cannot be deleted alone there (DELETE by tag refused:"
                    f" HTTP {refused.status}), and its manifest {digest} is still in the source"
                ) from None
        self._call(lambda: client.delete_manifest(digest))

    def delete_manifest(self, repository: str, digest: str) -> None:
        client = self._client(repository)
        self._call(lambda: client.delete_manifest(digest))


# --- another Skyport ------------------------------------------------------------------


class AssumedRoleClients(AwsClients):
    """AwsClients whose credentials are those of an IAM role, assumed with STS and
    refreshed by botocore before they expire."""

    def __init__(self, settings: Settings, sts: Any, role: str) -> None:
        super().__init__(settings)
        self._sts = sts
        self._role = role

    @property
    def _session(self) -> Any:  # type: ignore[override]
        session = self.__dict__.get("_assumed_session")
        if session is None:
            import boto3
            import botocore.session
            from botocore.credentials import RefreshableCredentials

            def fetch() -> dict:
                answer = self._sts.assume_role(RoleArn=self._role, RoleSessionName="skyport-replication")
                credentials = answer["Credentials"]
                return {
                    "access_key": credentials["AccessKeyId"],
                    "secret_key": credentials["SecretAccessKey"],
                    "token": credentials["SessionToken"],
                    "expiry_time": credentials["Expiration"].isoformat(),
                }

            core = botocore.session.get_session()
            core._credentials = RefreshableCredentials.create_from_metadata(  # noqa: SLF001
                metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
            )
            session = boto3.session.Session(botocore_session=core, region_name=self._settings.region)
            self.__dict__["_assumed_session"] = session
        return session


class SkyportDestination:
    def __init__(self, url: str, source_clients: AwsClients) -> None:
        from ..registry import Registry
        from ..storage.s3 import S3ObjectStore

        parts = skyport_destination(url)
        self.url = url
        endpoint = parts.get("endpoint")
        settings = Settings(
            bucket=parts["bucket"],
            table=parts["table"],
            region=parts["region"],
            s3_endpoint=endpoint,
            dynamodb_endpoint=endpoint,
        )
        clients = (
            AssumedRoleClients(settings, source_clients.sts, parts["role"])
            if parts.get("role")
            else AwsClients(settings)
        )
        self._settings = settings
        self._registry = Registry(settings, clients=clients)
        self._objects = S3ObjectStore(clients.s3, settings.bucket)

    def _call(self, action: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return action()
        except StorageError as error:
            raise DestinationError(f"skyport {self._settings.table}: storage: {error}") from None
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            raise DestinationError(f"skyport {self._settings.table}: {code}: {error}") from None
        except BotoCoreError as error:
            raise DestinationError(f"skyport {self._settings.table} unreachable: {error}") from None

    def probe(self) -> None:
        clients = self._registry.clients
        self._call(lambda: clients.dynamodb.describe_table(TableName=self._settings.table))
        self._call(lambda: clients.s3.head_bucket(Bucket=self._settings.bucket))

    def has_manifest(self, repository: str, digest: str) -> bool:
        try:
            self._call(lambda: self._registry.manifests.resolve(repository, digest))
        except ManifestUnknown:
            return False
        return True

    def ensure_blob(self, repository: str, digest: str, size: int, source: Source) -> None:
        # Held anywhere in the destination: linked into the repository, no copy.
        if self._call(lambda: self._registry.blobs.mount(repository, digest, None, None, size)) is not None:
            return
        record = self._call(lambda: source.record(repository, digest))
        key = keys.blob_object(uuid.uuid4().hex)
        self._call(lambda: self._objects.copy_from_bucket(source.bucket, record.key, key, record.size))
        self._call(lambda: self._registry.blobs.register(repository, BlobRecord(digest, record.size, key)))

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> None:
        self._call(lambda: self._registry.manifests.push(repository, reference, media_type, body))

    def delete_tag(self, repository: str, tag: str, source: Source) -> None:
        try:
            self._call(lambda: self._registry.manifests.delete(repository, tag))
        except ManifestUnknown:
            pass

    def delete_manifest(self, repository: str, digest: str) -> None:
        try:
            self._call(lambda: self._registry.manifests.delete(repository, digest))
        except ManifestUnknown:
            pass
