"""The proof that online garbage collection never removes what a committed manifest
references (issue 12): seeded random schedules that interleave pushes (blob uploads,
HEAD-and-skip, mounts, then the manifest), tag moves, index pushes, manifest deletes and
garbage collection runs with grace 0, one HTTP request or one GC page at a time.

An upload left open across GC steps is finished afterwards: its session's objects are
never collected.

GC is driven through its public API (``Registry.gc.begin`` / ``step``) in small pages, so
a push really lands between the collector's read of a repository and its deletes, or
between the link phase and the blob phase. After each schedule, and again after one more
full run once every operation has finished, every committed image (every manifest a tag or
digest still names, by the clients' own record of what the registry answered) is fully
pullable over HTTP: the manifest, and every blob's redirect leading to an object with the
digest's bytes. After that last run, no blob is left that no committed manifest references.

A push refused with MANIFEST_BLOB_UNKNOWN (the collector removed a blob the client had
uploaded, or HEADed, before the run started) is the documented client-visible effect;
such pushes are counted, never committed. The schedule count, and what happened, are
printed (``-s`` shows them). SKYPORT_GC_RACE_SCHEDULES sets the count (default 200).

``test_the_proof_fails_without_the_conditions`` is the test of the test: with the
collector's conditions replaced by plain existence checks (a monkeypatch of the two named
conditions), the same schedules find a committed image that is no longer pullable.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import pytest
from gc_support import assert_pullable, items
from harness import new_stack
from moto import mock_aws
from oci import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, descriptor, sha256
from skyport.config import Settings
from skyport.registry import Registry
from skyport.storage.clients import AwsClients
from skyport_api.app import create_app
from starlette.testclient import TestClient

SCHEDULES = int(os.environ.get("SKYPORT_GC_RACE_SCHEDULES") or 200)
REPOSITORIES = ("team/a", "team/b", "team/c")
TAGS = ("latest", "v1", "v2")
# How many steps of others a tag move, index push or delete waits for something to act on.
WAIT_STEPS = 12


@dataclass
class Model:
    """What the clients know is committed, from the registry's answers."""

    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (repo, digest) -> body
    tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, tag) -> digest
    children: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # index -> child digests
    blob_homes: dict[str, set[str]] = field(default_factory=dict)  # digest -> repos it was pushed to

    def commit(self, repo: str, digest: str, body: bytes, tag: str | None, children: list[str]) -> None:
        self.manifests[(repo, digest)] = body
        if children:
            self.children[(repo, digest)] = children
        if tag is not None:
            self.tags[(repo, tag)] = digest

    def delete(self, repo: str, digest: str) -> None:
        del self.manifests[(repo, digest)]
        self.children.pop((repo, digest), None)
        for key in [key for key, named in self.tags.items() if key[0] == repo and named == digest]:
            del self.tags[key]

    def protected_children(self) -> set[tuple[str, str]]:
        return {(repo, child) for (repo, _), children in self.children.items() for child in children}

    def referenced_blobs(self) -> set[str]:
        found: set[str] = set()
        for body in self.manifests.values():
            document = json.loads(body)
            for entry in [document.get("config"), *document.get("layers", [])]:
                if entry:
                    found.add(entry["digest"])
        return found


class Schedule:
    def __init__(self, seed: int, http: TestClient, registry: Registry, stats: Counter) -> None:
        self.rng = random.Random(seed)
        self.http, self.registry, self.stats = http, registry, stats
        self.model = Model()
        self.base_layers = [os.urandom(self.rng.randint(50, 300)) for _ in range(3)]

    # --- the operations, one request per step -------------------------------------------------

    def _upload(self, repo: str, data: bytes) -> Iterator[None]:
        digest = sha256(data)
        how = self.rng.choice(("upload", "head", "mount"))
        homes = sorted(self.model.blob_homes.get(digest, set()) - {repo})
        if how == "head":
            response = self.http.head(f"/v2/{repo}/blobs/{digest}")
            yield
            if response.status_code == 200:
                self.stats["blob HEAD found, upload skipped"] += 1
                return
        elif how == "mount" and homes:
            response = self.http.post(
                f"/v2/{repo}/blobs/uploads/?mount={digest}&from={self.rng.choice(homes)}"
            )
            yield
            if response.status_code == 201:
                self.stats["blob mounted"] += 1
                self.model.blob_homes.setdefault(digest, set()).add(repo)
                return
            assert response.status_code == 202, response.text
            location = response.headers["Location"]
            separator = "&" if "?" in location else "?"
            response = self.http.put(f"{location}{separator}digest={digest}", content=data)
            assert response.status_code == 201, response.text
            self.stats["blob uploaded after a refused mount"] += 1
            self.model.blob_homes.setdefault(digest, set()).add(repo)
            yield
            return
        response = self.http.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", content=data)
        assert response.status_code == 201, response.text
        self.stats["blob uploaded"] += 1
        self.model.blob_homes.setdefault(digest, set()).add(repo)
        yield

    def _put_manifest(
        self, repo: str, body: bytes, media_type: str, tag: str | None, children: list[str]
    ) -> Iterator[None]:
        digest = sha256(body)
        response = self.http.put(
            f"/v2/{repo}/manifests/{tag or digest}", content=body, headers={"Content-Type": media_type}
        )
        # The model follows the registry's order: updated before any other step runs.
        if response.status_code == 201:
            self.model.commit(repo, digest, body, tag, children)
            self.stats[f"{media_type.rsplit('.', 2)[-2]} committed"] += 1
        else:
            # The one refusal online GC may cause: a blob gone between its upload (or HEAD)
            # and the manifest, because it was unused since before the run started (grace 0).
            assert response.status_code == 404, response.text
            assert response.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", response.text
            assert not children, "an index was refused although its children were committed"
            self.stats["push refused: MANIFEST_BLOB_UNKNOWN"] += 1
        yield

    def push(self) -> Iterator[None]:
        repo = self.rng.choice(REPOSITORIES)
        config = json.dumps({"nonce": self.rng.random()}).encode()
        layers = self.rng.sample(self.base_layers, self.rng.randint(0, 2)) + [
            os.urandom(self.rng.randint(10, 200))
        ]
        for blob in (config, *layers):
            yield from self._upload(repo, blob)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
            }
        ).encode()
        tag = self.rng.choice((*TAGS, None))
        yield from self._put_manifest(repo, body, OCI_MANIFEST, tag, [])

    def _waiting(self, ready) -> Iterator[None]:
        """Let other steps run until ``ready()`` (something to act on), a few times at most."""
        for _ in range(WAIT_STEPS):
            if ready():
                return
            yield

    def move_tag(self) -> Iterator[None]:
        yield from self._waiting(lambda: self.model.manifests)
        images = [key for key in sorted(self.model.manifests) if key not in self.model.children]
        if not images:
            return
        repo, digest = self.rng.choice(images)
        tag = self.rng.choice(TAGS)
        response = self.http.put(
            f"/v2/{repo}/manifests/{tag}",
            content=self.model.manifests[(repo, digest)],
            headers={"Content-Type": OCI_MANIFEST},
        )
        # A committed manifest's blobs are all still linked: moving a tag to it cannot fail.
        assert response.status_code == 201, response.text
        self.model.tags[(repo, tag)] = digest
        self.stats["tag moved"] += 1
        yield

    def push_index(self) -> Iterator[None]:
        repo = self.rng.choice(REPOSITORIES)
        yield from self._waiting(lambda: sum(1 for r, _ in self.model.manifests if r == repo) >= 2)
        images = [
            d for (r, d) in sorted(self.model.manifests) if r == repo and (r, d) not in self.model.children
        ]
        if len(images) < 2:
            return
        chosen = self.rng.sample(images, 2)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [descriptor(OCI_MANIFEST, self.model.manifests[(repo, d)]) for d in chosen],
            }
        ).encode()
        yield from self._put_manifest(repo, body, OCI_INDEX, self.rng.choice(TAGS), chosen)

    def delete(self) -> Iterator[None]:
        yield from self._waiting(lambda: self.model.manifests)
        deletable = sorted(set(self.model.manifests) - self.model.protected_children())
        if not deletable:
            return
        repo, digest = self.rng.choice(deletable)
        response = self.http.delete(f"/v2/{repo}/manifests/{digest}")
        assert response.status_code == 202, response.text
        self.model.delete(repo, digest)
        self.stats["manifest deleted"] += 1
        yield

    def chunked_upload(self) -> Iterator[None]:
        """An upload left open across GC steps (its tail object under uploads/ is named by its
        session: never collected), then finished: it must complete, whole."""
        repo = self.rng.choice(REPOSITORIES)
        data = os.urandom(self.rng.randint(100, 400))
        response = self.http.post(f"/v2/{repo}/blobs/uploads/")
        assert response.status_code == 202, response.text
        location = response.headers["Location"]
        yield
        half = len(data) // 2
        response = self.http.patch(
            location,
            content=data[:half],
            headers={"Content-Range": f"0-{half - 1}", "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 202, response.text
        location = response.headers["Location"]
        for _ in range(self.rng.randint(1, WAIT_STEPS)):
            yield
        separator = "&" if "?" in location else "?"
        response = self.http.put(f"{location}{separator}digest={sha256(data)}", content=data[half:])
        assert response.status_code == 201, response.text
        self.stats["chunked upload finished across GC steps"] += 1
        yield

    def collect(self) -> Iterator[None]:
        """Garbage collection runs, grace 0, one page per step (small pages)."""
        for _ in range(self.rng.randint(1, 2)):
            run = self.registry.gc.begin(0, page_size=self.rng.randint(2, 6))
            assert run is not None, "a previous run of this schedule still holds the lease"
            yield
            while self.registry.gc.step(run):
                yield
            self.stats["GC runs"] += 1
            for kind, count in self.registry.gc.report(run)["removed"].items():
                self.stats[f"GC removed {kind}"] += count

    # --- the schedule ---------------------------------------------------------------------------

    def play(self) -> None:
        kinds = [self.push] * 6 + [self.move_tag, self.push_index, self.delete] * 2 + [self.chunked_upload]
        actors = [self.rng.choice(kinds)() for _ in range(self.rng.randint(6, 12))]
        actors.insert(self.rng.randint(0, len(actors)), self.collect())
        while actors:
            actor = self.rng.choice(actors)
            try:
                next(actor)
            except StopIteration:
                actors.remove(actor)
        self.check()
        # Once nothing else runs, one more full run: everything committed stays, and
        # nothing that no committed manifest references is left.
        report = self.registry.gc.run(0)
        assert report["complete"], report
        self.check()
        blobs = {pk[len("BLOB#") :] for pk, _ in items(self.registry, "BLOB#")}
        assert blobs == self.model.referenced_blobs()

    def read_object(self, url: str) -> bytes:
        """The bytes of the object a presigned URL names (path-style or virtual-hosted)."""
        bucket = self.registry.settings.bucket
        key = unquote(urlsplit(url).path).lstrip("/")
        key = key[len(bucket) + 1 :] if key.startswith(f"{bucket}/") else key
        return self.registry.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def check(self) -> None:
        for repo, digest in sorted(self.model.manifests):
            assert_pullable(self.http, repo, digest, read=self.read_object)
        for (repo, tag), digest in sorted(self.model.tags.items()):
            response = self.http.head(
                f"/v2/{repo}/manifests/{tag}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
            )
            assert response.status_code == 200 and response.headers["Docker-Content-Digest"] == digest
            assert_pullable(self.http, repo, tag, read=self.read_object)


@pytest.fixture(scope="module")
def in_process_aws(template: dict) -> Iterator[AwsClients]:
    """moto in process (about 1 ms a call, against 3+ through the server): hundreds of
    schedules of tens of requests each. Redirects are followed by reading the object the
    presigned URL names through the same moto (``assert_pullable(..., read=...)``)."""
    with mock_aws():
        yield AwsClients(Settings(bucket="-", table="-", region="us-east-1"))


def _play(seeds: range, aws_clients: AwsClients, template: dict, stats: Counter) -> None:
    for seed in seeds:
        settings = new_stack(None, aws_clients, template, label="gcrace")
        registry = Registry(settings, clients=aws_clients)
        try:
            with TestClient(create_app(registry), follow_redirects=False) as http:
                try:
                    Schedule(seed, http, registry, stats).play()
                except AssertionError as failure:
                    raise AssertionError(f"schedule {seed}: {failure}") from failure
        finally:
            _drop(aws_clients, settings)
        stats["schedules"] += 1


def _drop(aws_clients: AwsClients, settings: Settings) -> None:
    """The schedule's table and bucket go: in-process moto would keep them all."""
    aws_clients.dynamodb.delete_table(TableName=settings.table)
    s3 = aws_clients.s3
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket=settings.bucket, Key=entry["Key"])
    for upload in s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=settings.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=settings.bucket)


def test_gc_never_removes_what_a_committed_manifest_references(in_process_aws, template):
    stats: Counter = Counter()
    _play(range(SCHEDULES), in_process_aws, template, stats)
    print(f"\nGC race: {stats['schedules']} schedules, every committed image pullable after each")
    for name, count in sorted(stats.items()):
        print(f"  {name}: {count}")
    assert stats["schedules"] == SCHEDULES
    # The schedules did race: GC removed things, and pushes lost blobs to it.
    assert stats["GC removed links"] and stats["GC removed blobs"]
    assert stats["push refused: MANIFEST_BLOB_UNKNOWN"]


@pytest.mark.parametrize("switched_off", ["conditions", "stamps"])
def test_the_proof_fails_without_the_conditions(switched_off, in_process_aws, template, monkeypatch):
    """The test of the test: an unsafe collector is caught by the same schedules."""
    from skyport.storage.dynamodb import gc as gc_storage
    from skyport.storage.dynamodb import manifests

    if switched_off == "conditions":
        # Existence only (the values stay referenced, as DynamoDB requires).
        monkeypatch.setattr(gc_storage, "LINK_UNUSED_SINCE", "attribute_exists(PK) OR used_ms = :cutoff")
        monkeypatch.setattr(
            gc_storage,
            "BLOB_UNMARKED_AND_UNUSED",
            "attribute_exists(PK) OR gc_mark = :run OR used_ms = :cutoff",
        )
    else:
        # A push's references checked but not stamped, as before this change.
        checks = manifests.DynamoManifestIndex._checks
        monkeypatch.setattr(
            manifests.DynamoManifestIndex,
            "_checks",
            lambda self, repository, digest, blobs, children, stamp=None: checks(
                self, repository, digest, blobs, children
            ),
        )
        monkeypatch.setattr(manifests.DynamoManifestIndex, "_stamp_one_by_one", lambda self, checks: None)
    stats: Counter = Counter()
    with pytest.raises(AssertionError) as caught:
        _play(range(SCHEDULES), in_process_aws, template, stats)
    print(
        f"\nwithout the {switched_off}: caught after {stats['schedules'] + 1} schedules: {caught.value}"[:600]
    )
