"""The composition root: settings in, services out. Nothing is created until used."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING

from .blob_cache import BlobLinkCache
from .blobs import BlobService
from .catalog import CatalogService
from .config import Settings
from .manifests import ManifestService
from .referrers import ReferrerService
from .storage.clients import AwsClients
from .storage.dynamodb.blobs import DynamoBlobIndex
from .storage.dynamodb.manifests import DynamoManifestIndex
from .storage.dynamodb.uploads import DynamoUploadSessions
from .storage.s3 import S3ObjectStore
from .tags import TagService
from .uploads import UploadService

if TYPE_CHECKING:
    from .auth.capabilities import Capabilities
    from .auth.identities import IdentityAdmin
    from .auth.service import AuthService
    from .direct_uploads import DirectUploadService
    from .gc import GarbageCollector
    from .immutability import ImmutabilityRules
    from .pull_through import CacheRules, PullThroughCache
    from .pull_through.fill import BlobFill
    from .pulls import PullRecorder
    from .retention import RetentionService
    from .scan_policy import ScanPolicies
    from .scan_results import ScanResults
    from .scanning.service import ScanService
    from .storage.ports import AuthStore
    from .upload_expiry import UploadExpiry
    from .usage import UsageService


class Registry:
    def __init__(self, settings: Settings, clients: AwsClients | None = None) -> None:
        self.settings = settings
        self.clients = clients or AwsClients(settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Registry:
        return cls(Settings.from_env(env))

    @cached_property
    def _objects(self) -> S3ObjectStore:
        return S3ObjectStore(self.clients.s3, self.settings.bucket)

    @cached_property
    def _manifest_index(self) -> DynamoManifestIndex:
        return DynamoManifestIndex(self.clients.dynamodb, self.settings.table)

    @cached_property
    def blobs(self) -> BlobService:
        index = DynamoBlobIndex(self.clients.dynamodb, self.settings.table)
        links = BlobLinkCache(self.settings.blob_cache_entries, self.settings.blob_cache_seconds)
        return BlobService(
            self._objects,
            index,
            self.settings.presign_expiry_seconds,
            self.settings.automatic_mount,
            before_delete=self.manifests.refuse_deleting_immutable_content,
            links=links,
        )

    @cached_property
    def uploads(self) -> UploadService:
        sessions = DynamoUploadSessions(self.clients.dynamodb, self.settings.table)
        return UploadService(self._objects, sessions, self.blobs, self.settings)

    @cached_property
    def manifests(self) -> ManifestService:
        return ManifestService(
            self._objects,
            self._manifest_index,
            self.settings,
            self.immutability,
            # Clients push nothing into a pull-through cache prefix (skyport/pull_through).
            before_push=lambda repository: self.cache_rules.refuse_client_write(repository, "push"),
        )

    @cached_property
    def immutability(self) -> ImmutabilityRules:
        """Tag immutability rules (issue 12): enforced by ``manifests``, administered by
        `skyport immutability`; cached per process (skyport/immutability.py)."""
        from .immutability import ImmutabilityRules
        from .storage.dynamodb.immutability import DynamoImmutabilityStore

        store = DynamoImmutabilityStore(self.clients.dynamodb, self.settings.table)
        return ImmutabilityRules(store, self.settings.immutability_cache_seconds)

    @cached_property
    def pulls(self) -> PullRecorder:
        """Last-pull records (issue 12): noted by the manifest GET, written at most once
        per SKYPORT_PULL_RECORD_SECONDS per manifest and process (skyport/pulls.py)."""
        from .pulls import PullRecorder
        from .storage.dynamodb.pulls import DynamoPullStore

        store = DynamoPullStore(self.clients.dynamodb, self.settings.table)
        return PullRecorder(store, self.settings.pull_record_seconds)

    @cached_property
    def retention(self) -> RetentionService:
        """Retention rules and runs (issue 12: skyport/retention.py): `skyport retention`
        and the scheduled RetentionFunction."""
        from .retention import RetentionService
        from .storage.dynamodb.pulls import DynamoPullStore
        from .storage.dynamodb.retention import DynamoRetentionStore

        return RetentionService(
            DynamoRetentionStore(self.clients.dynamodb, self.settings.table),
            DynamoPullStore(self.clients.dynamodb, self.settings.table),
            self.manifests,
            self.immutability,
        )

    @cached_property
    def tags(self) -> TagService:
        return TagService(self._manifest_index)

    @cached_property
    def referrers(self) -> ReferrerService:
        return ReferrerService(self._manifest_index, self._objects)

    @cached_property
    def catalog(self) -> CatalogService:
        return CatalogService(self._manifest_index)

    @cached_property
    def direct_uploads(self) -> DirectUploadService:
        """Direct uploads (``skyport push``): parts straight to S3, verified by the
        verifier function (SKYPORT_VERIFY_FUNCTION) or, locally, a thread of this process."""
        from .direct_uploads import DirectUploadService, LambdaVerifier, ThreadVerifier
        from .storage.dynamodb.uploads import DIRECT_LEASE

        sessions = DynamoUploadSessions(self.clients.dynamodb, self.settings.table)
        launcher: LambdaVerifier | ThreadVerifier
        if self.settings.verify_function:
            launcher = LambdaVerifier(self.clients.lambda_, self.settings.verify_function)
        else:
            launcher = ThreadVerifier(lambda upload_id: service.verify(upload_id))
        service = DirectUploadService(
            self._objects, sessions, self.blobs, self.settings, launcher, DIRECT_LEASE
        )
        return service

    # Auth: only registries with auth on (and the admin commands) pay for the imports.
    @cached_property
    def _auth_store(self) -> AuthStore:
        from .storage.dynamodb.identities import DynamoAuthStore

        return DynamoAuthStore(self.clients.dynamodb, self.settings.table)

    @cached_property
    def auth(self) -> AuthService:
        """The auth service, with the key source and the first admin the settings name
        (SKYPORT_SIGNING_KEY_SECRET or _PARAMETER, else the table; SKYPORT_ADMIN_SECRET)."""
        from .auth.bootstrap import admin_credentials
        from .auth.keys import key_source
        from .auth.service import AuthService

        store = self._auth_store
        keys = key_source(self.settings, store, self.clients)
        bootstrap = admin_credentials(self.settings, self.clients)
        return AuthService(store, self.settings, keys, bootstrap=bootstrap)

    @cached_property
    def identities(self) -> IdentityAdmin:
        """Identity admin: users, robots, grants (the `skyport user|robot|grant…` commands)."""
        from .auth.identities import IdentityAdmin

        return IdentityAdmin(self._auth_store)

    # The upload service (issue 10): capabilities the API mints and the upload service checks.
    @cached_property
    def capabilities(self) -> Capabilities:
        """Upload capabilities, keyed by SKYPORT_UPLOAD_KEY or SKYPORT_UPLOAD_KEY_SECRET."""
        from .auth.capabilities import Capabilities, capability_keys

        return Capabilities(capability_keys(self.settings, self.clients), self.settings.auth_enabled)

    # Abandoned uploads expire (issue 12): `skyport uploads expire` and UploadExpiryFunction.
    # Its storage (a Scan, S3 listings) is its own: the API never builds this.
    @cached_property
    def upload_expiry(self) -> UploadExpiry:
        from .storage.dynamodb.upload_expiry import DynamoExpiringSessions
        from .storage.s3_listings import S3Listings
        from .upload_expiry import UploadExpiry

        return UploadExpiry(
            S3Listings(self.clients.s3, self.settings.bucket),
            DynamoExpiringSessions(self.clients.dynamodb, self.settings.table),
            self.settings,
        )

    # Usage (issue 12): `skyport usage` and the usage extension routes (routes/usage.py).
    @cached_property
    def usage(self) -> UsageService:
        from .storage.dynamodb.usage import DynamoUsageIndex
        from .usage import UsageService

        return UsageService(
            DynamoUsageIndex(self.clients.dynamodb, self.settings.table), self._manifest_index
        )

    # Garbage collection (issue 12): the scheduled function and `skyport gc`.
    @cached_property
    def gc(self) -> GarbageCollector:
        """The garbage collector (skyport/gc): the grace period is the caller's
        (settings.gc_grace_seconds by default)."""
        from .gc import GarbageCollector
        from .storage.dynamodb.gc import DynamoGcStore
        from .storage.s3_listings import S3Listings

        # A collector in this process (`skyport serve`'s scheduler, tests) tells this
        # process's blob cache what it unlinks; elsewhere the cache's TTL is the bound.
        store = DynamoGcStore(self.clients.dynamodb, self.settings.table, on_link_deleted=self.blobs.forget)
        listing = S3Listings(self.clients.s3, self.settings.bucket)
        return GarbageCollector(store, self._objects, listing, repositories=self._manifest_index)

    # The pull-through cache (issue 13: skyport/pull_through). Rules are read per process
    # at most every SKYPORT_CACHE_RULES_SECONDS; nothing else is built until a rule matches.
    @cached_property
    def cache_rules(self) -> CacheRules:
        from .pull_through import CacheRules
        from .storage.dynamodb.pull_through import DynamoPullThroughStore

        return CacheRules(
            DynamoPullThroughStore(self.clients.dynamodb, self.settings.table),
            self.settings.cache_rules_seconds,
            secrets=lambda: self.clients.secretsmanager,
            secret_prefix=self.settings.hook_secrets,
            holds_repositories=self._holds_repositories,
        )

    def _holds_repositories(self, prefix: str) -> bool:
        """Whether the catalog lists ``prefix`` or a name under ``prefix/`` (names under it
        sort right after ``prefix/``)."""
        index = self._manifest_index
        under = index.list_repositories(1, f"{prefix}/").items
        return index.repository_exists(prefix) or bool(under and under[0].startswith(f"{prefix}/"))

    @cached_property
    def _upstreams(self):
        from .pull_through.upstream import Upstreams

        return Upstreams(self.settings.cache_upstream_timeout_seconds, lambda: self.clients.secretsmanager)

    @cached_property
    def cache_fill(self) -> BlobFill:
        """The blob fill (pull_through/fill.py): CacheFillFunction when
        SKYPORT_CACHE_FILL_FUNCTION names it, else a thread pool of this process."""
        from .pull_through.fill import BlobFill, LambdaFills, ThreadFills
        from .storage.dynamodb.pull_through import DynamoPullThroughStore

        fill = BlobFill(
            self._objects,
            self.blobs,
            DynamoPullThroughStore(self.clients.dynamodb, self.settings.table),
            self.cache_rules,
            self._upstreams,
            self.settings,
        )
        if self.settings.cache_fill_function:
            fill.launcher = LambdaFills(self.clients.lambda_, self.settings.cache_fill_function)
        else:
            fill.launcher = ThreadFills(fill.run)
        return fill

    @cached_property
    def pull_through(self) -> PullThroughCache:
        from .pull_through import PullThroughCache
        from .pull_through.blobs import CachedBlobs
        from .pull_through.manifests import CachedManifests
        from .storage.dynamodb.pull_through import DynamoPullThroughStore

        tags = DynamoPullThroughStore(self.clients.dynamodb, self.settings.table)
        cached_manifests = CachedManifests(
            self.manifests, self._manifest_index, self._objects, tags, self._upstreams, self.settings
        )
        cached_blobs = CachedBlobs(self.blobs, self.cache_fill, self._upstreams, self.settings)
        return PullThroughCache(
            self.cache_rules, self.manifests, self.blobs, cached_manifests, cached_blobs, self._manifest_index
        )

    # Scanning (issue 14: skyport/scanning/service.py): the scan function, the daily
    # re-scan, `skyport scan|sbom|vulns`, the extension endpoint and the scan policy.
    @cached_property
    def scanning(self) -> ScanService:
        from .scanning.service import ScanService
        from .storage.dynamodb.pulls import DynamoPullStore
        from .storage.dynamodb.scans import DynamoScanStore

        return ScanService(
            self._objects,
            self.manifests,
            self.blobs,
            self._manifest_index,
            DynamoScanStore(self.clients.dynamodb, self.settings.table),
            self.settings,
            database=lambda: self.osv_database,
            pulls=DynamoPullStore(self.clients.dynamodb, self.settings.table),
            # A pull-through cache prefix is read-only: nothing is pushed there, scans included.
            writable=self._clients_may_push,
        )

    def _clients_may_push(self, repository: str) -> bool:
        """Whether ``repository`` takes pushes: not under a pull-through cache rule (nor the
        rule's prefix itself, which CacheRules.target refuses as a name)."""
        from .errors import RegistryError

        try:
            return self.cache_rules.target(repository) is None
        except RegistryError:
            return False

    @cached_property
    def osv_database(self):
        """The OSV data mirrored into the bucket (skyport/vulnerabilities): one per process,
        loading each ecosystem lazily and looking for a newer mirror at most every
        SKYPORT_OSV_REFRESH_SECONDS."""
        from .vulnerabilities.database import OsvDatabase

        return OsvDatabase.from_store(self._objects, refresh_seconds=self.settings.osv_refresh_seconds)

    # Scan policies and results (issue 14, "Using it"): the manifest GET and HEAD ask
    # scan_policies.check (no policy covering the repository: nothing read); `skyport
    # scan|sbom|vulns` and the scan extension endpoint read scan_results. Both read what
    # the scan service (self.scanning) stored.
    @cached_property
    def scan_policies(self) -> ScanPolicies:
        from .scan_policy import ScanPolicies
        from .storage.dynamodb.scan_policy import DynamoScanPolicyStore

        return ScanPolicies(
            DynamoScanPolicyStore(self.clients.dynamodb, self.settings.table),
            lambda repository, digest: self.scanning.policy_report(repository, digest),
            self.settings.scan_policy_cache_seconds,
        )

    @cached_property
    def scan_results(self) -> ScanResults:
        from .scan_results import ScanResults

        return ScanResults(self.manifests, self.scanning, self._manifest_index.repository_exists)
