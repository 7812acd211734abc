"""`skyport pull REF oci:DIR`: manifests through the API, blobs from where the registry
redirects (S3) in parallel ranged GETs, every digest checked, written as an OCI image
layout (image-spec "image-layout") that skopeo and others read: ``oci-layout``,
``blobs/sha256/...`` and ``index.json`` naming the image by its tag
(``org.opencontainers.image.ref.name``)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from skyport.distribution_client import RegistryClient, RegistryClientError, Target, is_loopback

from .image_sources import DOCKER_LIST, DOCKER_MANIFEST, INDEX_TYPES, OCI_INDEX, OCI_MANIFEST, REF_NAME
from .push import _common, client_for, progress

STREAM_CHUNK = 4 * 1024 * 1024
DEFAULT_RANGE_MIB = 16
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))


def add_command(commands: argparse._SubParsersAction) -> None:
    pull = commands.add_parser(
        "pull",
        help="pull an image into an OCI layout directory (parallel ranged GETs)",
        description="Pull REF (host[:port]/name[:tag]) into DESTINATION (oci:DIR); every digest checked.",
    )
    pull.add_argument("reference")
    pull.add_argument("destination")
    pull.add_argument(
        "--range-mib",
        type=int,
        default=None,
        help="blobs are fetched in ranges of this many MiB, --jobs at a time (default 16); 0: one "
        "GET per blob. Unless given, blobs served from loopback (a local S3 emulator) are "
        "fetched whole: ranges beat a remote store's per-connection limit, and moto copies "
        "the whole object for every range",
    )
    _common(pull)


class Puller:
    def __init__(self, client: RegistryClient, args: argparse.Namespace, directory: Path) -> None:
        self.client = client
        self.args = args
        self.directory = directory
        self.pool = ThreadPoolExecutor(max(1, args.jobs), thread_name_prefix="skyport-pull")
        self.bytes = 0

    def _path(self, digest: str) -> Path:
        algorithm, _, encoded = digest.partition(":")
        return self.directory / "blobs" / algorithm / encoded

    def manifest(self, reference: str) -> tuple[str, str, bytes]:
        response = self.client.request(
            "GET", f"/v2/{self.client.name}/manifests/{reference}", headers={"Accept": ACCEPT}
        )
        if response.status != 200:
            raise self.client.fail(response, f"manifest {reference}")
        body = response.data
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
        if reference.startswith("sha256:") and reference != digest:
            raise RegistryClientError(f"manifest {reference}: the registry sent other bytes ({digest})")
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        media_type = media_type or json.loads(body).get("mediaType")
        self._write(digest, body)
        return digest, media_type, body

    def _write(self, digest: str, body: bytes) -> None:
        path = self._path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    def image(self, digest: str, media_type: str, body: bytes) -> None:
        document = json.loads(body)
        if media_type in INDEX_TYPES:
            for child in document.get("manifests", []):
                child_digest, child_type, child_body = self.manifest(child["digest"])
                self.image(child_digest, child_type, child_body)
            return
        for blob in [document["config"], *document.get("layers", [])]:
            self.blob(blob["digest"], int(blob["size"]))

    def blob(self, digest: str, size: int) -> None:
        path = self._path(digest)
        if path.exists() and path.stat().st_size == size and _sha256_file(path) == digest:
            return  # already in the layout
        response = self.client.request("GET", f"/v2/{self.client.name}/blobs/{digest}", preload=False)
        if response.status in (301, 302, 303, 307, 308):
            url = response.headers["Location"]
            response.drain_conn()
        elif response.status == 200:  # the registry streams it itself (proxy delivery)
            url = None
        else:
            response.data  # noqa: B018 - read the error body for the message
            raise self.client.fail(response, f"blob {digest}")
        chosen = self.args.range_mib
        range_size = (DEFAULT_RANGE_MIB if chosen is None else chosen) * 1024 * 1024
        local = chosen is None and url is not None and is_loopback(urlsplit(url).netloc)
        if url is not None and (range_size <= 0 or local):
            # One plain GET, streamed: the same code path as a proxied blob.
            response = self.client.http.request("GET", url, preload_content=False, redirect=False)
            if response.status != 200:
                response.data  # noqa: B018 - read the error body for the message
                raise self.client.fail(response, f"blob {digest} from storage")
            url = None
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        bar = progress(self.args, size, digest[7:19])
        try:
            with open(partial, "wb") as file:
                file.truncate(size)
                if url is None:
                    for chunk in response.stream(STREAM_CHUNK):
                        file.write(chunk)
                        bar.update(len(chunk))
                    response.release_conn()
                else:
                    ranges = [(s, min(s + range_size, size) - 1) for s in range(0, size, range_size)]
                    fd = file.fileno()
                    futures = [self.pool.submit(self._range, url, fd, a, b, bar) for a, b in ranges]
                    for future in futures:
                        future.result()
            if _sha256_file(partial) != digest:
                raise RegistryClientError(f"blob {digest}: the bytes received do not match the digest")
            partial.replace(path)
            self.bytes += size
        finally:
            bar.close()
            partial.unlink(missing_ok=True)

    def _range(self, url: str, fd: int, first: int, last: int, bar) -> None:
        for attempt in range(4):
            response = self.client.http.request(
                "GET", url, headers={"Range": f"bytes={first}-{last}"}, redirect=False
            )
            if response.status in (200, 206) and len(response.data) == last - first + 1:
                os.pwrite(fd, response.data, first)
                bar.update(last - first + 1)
                return
            if attempt == 3:
                raise RegistryClientError(f"range {first}-{last}: HTTP {response.status}")
            time.sleep(0.2 * 2**attempt)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(4 * 1024 * 1024):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _write_layout(directory: Path, digest: str, media_type: str, size: int, tag: str) -> None:
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = directory / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    # The tag names one manifest in the layout: a new pull of it replaces the old entry.
    index["manifests"] = [
        m for m in index.get("manifests", []) if (m.get("annotations") or {}).get(REF_NAME) != tag
    ]
    index["manifests"].append(
        {"mediaType": media_type, "digest": digest, "size": size, "annotations": {REF_NAME: tag}}
    )
    index_path.write_text(json.dumps(index, indent=2))


def run(args: argparse.Namespace) -> int:
    kind, _, folder = args.destination.partition(":")
    if kind != "oci" or not folder:
        print("skyport pull: the destination is oci:DIR", file=sys.stderr)
        return 2
    directory = Path(folder)
    try:
        target = Target.parse(args.reference)
        client = client_for(args, target, "pull")
        directory.mkdir(parents=True, exist_ok=True)
        puller = Puller(client, args, directory)
        started = time.monotonic()
        try:
            digest, media_type, body = puller.manifest(target.tag)
            puller.image(digest, media_type, body)
        finally:
            puller.pool.shutdown(wait=True, cancel_futures=True)
        _write_layout(directory, digest, media_type, len(body), target.tag)
    except (RegistryClientError, OSError) as error:
        print(f"skyport pull: {error}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(
            f"pulled {target.host}/{target.name}:{target.tag} into {directory}: "
            f"{puller.bytes} bytes in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
    print(digest)
    return 0
