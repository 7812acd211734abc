"""`skyport push SOURCE TARGET`: blobs straight to S3 in parallel parts, through the
registry's direct-upload extension (skyport.direct_uploads), then manifests through
the ordinary API.

For each blob: HEAD (skip what the repository has); start a direct upload (skip what
the registry has elsewhere: linked, as a mount); ask which parts S3 holds already (a
push interrupted earlier resumes: its upload id is kept in a state file until the
blob is done); upload the missing parts, ``--jobs`` at a time, to presigned URLs
fetched a batch at a time (they expire in minutes); complete, and wait while the
registry verifies the SHA-256. Then the manifests, children before the index, and the
root's digest is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from skyport.distribution_client import RegistryClient, RegistryClientError, Target

from .docker_config import docker_credentials
from .image_sources import BlobFile, Image, SourceError, open_source

URL_BATCH = 64  # part URLs asked for at once: a few requests per GiB, none stale before use
PART_ATTEMPTS = 4
CALL_ATTEMPTS = 4
# Upload sessions a push starts afresh when the registry no longer knows one (404).
SESSION_ATTEMPTS = 3
VERIFY_POLL_MAX = 2.0


class _SessionGone(Exception):
    """The registry answered 404 for an upload session this push started or resumed."""


class Interrupted(Exception):
    """--stop-after-parts reached: the push stops as if killed, its state kept."""


def add_command(commands: argparse._SubParsersAction) -> None:
    push = commands.add_parser(
        "push",
        help="push an image straight to S3 through the registry (parallel parts)",
        description="Push SOURCE (oci:DIR[:TAG], docker-archive:FILE.tar, docker-daemon:IMAGE:TAG) "
        "to TARGET (host[:port]/name[:tag]). Blob bytes go straight to S3 by presigned part URLs; "
        "the registry verifies each blob's SHA-256 before it exists.",
    )
    push.add_argument("source")
    push.add_argument("target")
    _common(push)
    push.add_argument(
        "--stop-after-parts",
        type=int,
        default=0,
        help="stop (exit 3) after uploading this many parts, keeping the state for a resume (tests)",
    )
    push.add_argument(
        "--verify-timeout",
        type=float,
        default=960.0,
        help="seconds to wait for the registry's SHA-256 check of one blob (default 960: "
        "the verifier function's 15 minutes, and a margin)",
    )
    push.add_argument(
        "--state-file",
        default=os.environ.get("SKYPORT_PUSH_STATE")
        or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skyport" / "push.json"),
        help="where unfinished uploads are remembered, for resuming",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=8, help="parallel transfers (default 8)")
    parser.add_argument(
        "--username", help="with the password in SKYPORT_PASSWORD (else docker's config.json)"
    )
    parser.add_argument("--insecure", action="store_true", help="plain http (default for loopback hosts)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def client_for(args: argparse.Namespace, target: Target, actions: str) -> RegistryClient:
    credentials = None
    if args.username:
        password = os.environ.get("SKYPORT_PASSWORD")
        if password is None:
            raise RegistryClientError("--username needs the password in SKYPORT_PASSWORD")
        credentials = (args.username, password)
    else:
        credentials = docker_credentials(target.host)
    client = RegistryClient(
        target.host, target.name, credentials=credentials, insecure=args.insecure, connections=args.jobs + 4
    )
    client.login(actions)
    return client


def progress(args: argparse.Namespace, total: int, label: str):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=args.quiet or not sys.stderr.isatty(),
        leave=False,
    )


class _State:
    """Unfinished uploads, (registry, repository, digest) -> upload id, in a JSON file."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        try:
            self._uploads = json.loads(self._path.read_text())
        except (OSError, ValueError):
            self._uploads = {}

    def get(self, key: str) -> str | None:
        return self._uploads.get(key)

    def set(self, key: str, upload_id: str | None) -> None:
        with self._lock:
            if upload_id is None:
                self._uploads.pop(key, None)
            else:
                self._uploads[key] = upload_id
            self._path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self._uploads))
            temporary.replace(self._path)


class Pusher:
    def __init__(self, client: RegistryClient, args: argparse.Namespace, state: _State) -> None:
        self.client = client
        self.args = args
        self.state = state
        self.parts_sent = 0
        self.parts_reused = 0  # parts a resumed push found in S3 already
        self.parts_total = 0
        self.verify_seconds = 0.0  # waiting for the registry's SHA-256 checks
        self._count_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max(1, args.jobs), thread_name_prefix="skyport-push")
        self.skipped: list[str] = []
        self.uploaded: list[str] = []

    def _base(self) -> str:
        return f"/v2/{self.client.name}/_skyport/uploads"

    def _json(self, method: str, path: str, document: dict | None = None):
        body = json.dumps(document).encode() if document is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(CALL_ATTEMPTS):
            response = self.client.request(method, path, body=body, headers=headers)
            # A 5xx (UNAVAILABLE, a storage hiccup) is asked again, a little later.
            if response.status < 500 or attempt == CALL_ATTEMPTS - 1:
                return response
            time.sleep(0.1 * 2**attempt)
        return response

    def push_blob(self, blob: BlobFile) -> None:
        name = self.client.name
        head = self.client.request("HEAD", f"/v2/{name}/blobs/{blob.digest}")
        if head.status == 200:
            self.skipped.append(blob.digest)
            return
        key = f"{self.client.host}/{name}@{blob.digest}"
        for attempt in range(SESSION_ATTEMPTS):
            try:
                return self._push_blob(blob, key)
            except _SessionGone:
                # The registry no longer knows the upload (expired, cancelled, or lost by
                # the storage): forget it and start this blob over, a few times at most.
                self.state.set(key, None)
                if attempt == SESSION_ATTEMPTS - 1:
                    raise RegistryClientError(
                        f"{blob.digest}: the registry lost the upload session {SESSION_ATTEMPTS} times"
                    ) from None

    def _push_blob(self, blob: BlobFile, key: str) -> None:
        upload = None
        remembered = self.state.get(key)
        if remembered:
            response = self._json("GET", f"{self._base()}/{remembered}")
            if response.status == 200:
                upload = json.loads(response.data)
                if upload["state"] == "verifying":  # completed by the interrupted push
                    self._finish(blob, remembered, key)
                    self.uploaded.append(blob.digest)
                    return
        if upload is None:
            response = self._json("POST", self._base(), {"digest": blob.digest, "size": blob.size})
            if response.status == 201:
                self.skipped.append(blob.digest)
                return
            if response.status != 202:
                raise self.client.fail(response, f"starting the upload of {blob.digest}")
            upload = json.loads(response.data)
            self.state.set(key, upload["upload_id"])
        upload_id, part_size, count = upload["upload_id"], upload["part_size"], upload["part_count"]

        def length(number: int) -> int:
            return min(part_size, blob.size - (number - 1) * part_size)

        # Resume: the parts S3 holds, whole, are not sent again.
        have = {p["number"] for p in upload.get("parts", []) if p["size"] == length(p["number"])}
        missing = [n for n in range(1, count + 1) if n not in have]
        with self._count_lock:
            self.parts_reused += count - len(missing)
            self.parts_total += count
        bar = progress(self.args, blob.size, blob.digest[7:19])
        bar.update(blob.size - sum(length(n) for n in missing))
        try:
            for start in range(0, len(missing), URL_BATCH):
                batch = missing[start : start + URL_BATCH]
                response = self._json("POST", f"{self._base()}/{upload_id}/parts", {"parts": batch})
                if response.status == 404:
                    raise _SessionGone()
                if response.status != 200:
                    raise self.client.fail(response, f"part URLs for {blob.digest}")
                urls = json.loads(response.data)["urls"]
                futures = [
                    self.pool.submit(self._send_part, blob, n, part_size, urls[str(n)], bar) for n in batch
                ]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()
                for future in futures:
                    future.result()
        finally:
            bar.close()
        self._finish(blob, upload_id, key)
        self.uploaded.append(blob.digest)

    def _send_part(self, blob: BlobFile, number: int, part_size: int, url: str, bar) -> None:
        with self._count_lock:
            if self.args.stop_after_parts and self.parts_sent >= self.args.stop_after_parts:
                raise Interrupted()
        start = (number - 1) * part_size
        data = blob.read(start, min(part_size, blob.size - start))
        for attempt in range(PART_ATTEMPTS):
            try:
                response = self.client.http.request(
                    "PUT", url, body=data, headers={"Content-Length": str(len(data))}, redirect=False
                )
            except Exception:  # noqa: BLE001 - a reset connection: the part is sent again
                if attempt == PART_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * 2**attempt)
                continue
            if response.status == 200:
                break
            if attempt == PART_ATTEMPTS - 1 or response.status < 500:
                raise RegistryClientError(f"part {number} of {blob.digest}: S3 answered {response.status}")
            time.sleep(0.2 * 2**attempt)
        bar.update(len(data))
        with self._count_lock:
            self.parts_sent += 1

    def _finish(self, blob: BlobFile, upload_id: str, key: str) -> None:
        started = time.monotonic()
        response = self._json("POST", f"{self._base()}/{upload_id}/complete")
        if response.status == 404:
            raise _SessionGone()
        if response.status != 202:
            raise self.client.fail(response, f"completing {blob.digest}")
        delay = 0.02
        deadline = started + self.args.verify_timeout
        while True:  # the registry verifies; the session goes when it is done
            response = self._json("GET", f"{self._base()}/{upload_id}")
            if response.status == 404:
                break
            if response.status != 200:
                raise self.client.fail(response, f"status of {blob.digest}")
            if time.monotonic() > deadline:
                # Kept in the state file: a later push finds it verifying, or done.
                raise RegistryClientError(
                    f"{blob.digest}: the registry has not finished verifying it after "
                    f"{self.args.verify_timeout:.0f}s (upload {upload_id}); push again later"
                )
            time.sleep(delay)
            delay = min(delay * 2, VERIFY_POLL_MAX)
        with self._count_lock:
            self.verify_seconds += time.monotonic() - started
        self.state.set(key, None)
        head = self.client.request("HEAD", f"/v2/{self.client.name}/blobs/{blob.digest}")
        if head.status != 200:
            raise RegistryClientError(
                f"{blob.digest}: the registry refused the uploaded bytes (wrong digest or size)"
            )

    def push_manifest(self, digest: str, media_type: str, body: bytes, reference: str) -> None:
        path = f"/v2/{self.client.name}/manifests/{reference}"
        response = self.client.request("PUT", path, body=body, headers={"Content-Type": media_type})
        if response.status != 201:
            raise self.client.fail(response, f"manifest {reference}")


def push_image(image: Image, client: RegistryClient, args: argparse.Namespace, tag: str) -> Pusher:
    pusher = Pusher(client, args, _State(args.state_file))
    try:
        # Blobs one after another, each in parallel parts: one progress bar at a time,
        # and a large layer gets every connection. Small blobs go side by side.
        small = [b for b in image.blobs.values() if b.size < 16 * 1024 * 1024]
        large = [b for b in image.blobs.values() if b.size >= 16 * 1024 * 1024]
        # The first one alone: it makes the registry's count of this caller's open uploads,
        # which concurrent first uploads would all race to create (harmless on DynamoDB;
        # moto's transactions roll back by restoring whole-table copies, and concurrent
        # rollbacks there undo each other's writes).
        if small:
            pusher.push_blob(small[0])
        with ThreadPoolExecutor(max(1, args.jobs), thread_name_prefix="skyport-small") as side:
            for future in [side.submit(pusher.push_blob, b) for b in small[1:]]:
                future.result()
        for blob in large:
            pusher.push_blob(blob)
        for manifest in image.manifests[:-1]:
            pusher.push_manifest(manifest.digest, manifest.media_type, manifest.body, manifest.digest)
        root = image.root
        pusher.push_manifest(root.digest, root.media_type, root.body, tag)
    finally:
        pusher.pool.shutdown(wait=True, cancel_futures=True)
    return pusher


def run(args: argparse.Namespace) -> int:
    try:
        with open_source(args.source) as image:
            target = Target.parse(args.target, default_tag=image.tag or "latest")
            client = client_for(args, target, "pull,push")
            started = time.monotonic()
            pusher = push_image(image, client, args, target.tag)
            elapsed = time.monotonic() - started
    except Interrupted:
        print("skyport push: stopped after --stop-after-parts; run again to resume", file=sys.stderr)
        return 3
    except (SourceError, RegistryClientError) as error:
        print(f"skyport push: {error}", file=sys.stderr)
        return 1
    if not args.quiet:
        resumed = ""
        if pusher.parts_reused:
            resumed = f" ({pusher.parts_reused} of {pusher.parts_total} parts were there already)"
        print(
            f"pushed {target.host}/{target.name}:{target.tag}: {len(pusher.uploaded)} blobs uploaded, "
            f"{len(pusher.skipped)} already there{resumed}, in {elapsed:.1f}s "
            f"({pusher.verify_seconds:.1f}s of it waiting for the registry's SHA-256 checks)",
            file=sys.stderr,
        )
    print(image.root.digest)
    return 0
