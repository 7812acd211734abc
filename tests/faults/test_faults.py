"""Faults at every S3 and DynamoDB call of a push, a chunked upload, a commit, a manifest
push, a tag move and the deletes (issue 9, section 4), on the real boto3 clients.

Each scenario is first run without faults, counting its API calls (N). Then, for every
call k = 1..N and the faults faultinject.each_fault picks for it (every fault with
SKYPORT_FAULTS=all), it runs again on a repository of its own, with call k failing, and
the registry must:

- answer every request with success or a retryable error in the OCI envelope (503
  UNAVAILABLE, 429, 409 UPLOAD_BUSY; 404 BLOB_UPLOAD_UNKNOWN mid-upload, which tells the
  client to start the blob over): never a 500 UNKNOWN, never a dropped connection;
- show no half-written image: a manifest, by tag or digest, only with every blob it
  names fetchable with the right digest; a blob answered by HEAD only when its bytes
  are all there;
- let the client retry without faults, and succeed;
- keep what was committed before (images pushed earlier still pull byte-identical).

Every violation of a scenario is collected and reported at once, with the call and the
fault that caused it.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from faultinject import STATS, Fault, each_fault
from oci import Image, MiB, make_image, sha256, upload_path

# --- a client that stops at the first unexpected answer ----------------------------------


@dataclass
class Steps:
    """The requests of one operation, sent in order until one is not answered as
    expected (a client gives up there too)."""

    h: Any
    log: list[tuple[str, Any]] = field(default_factory=list)
    stopped: tuple[str, Any] | None = None

    def send(self, label: str, method: str, path: str, expect: set[int], **kwargs: Any) -> Any:
        if self.stopped:
            return None
        response = self.h.call(method, path, **kwargs)
        self.log.append((label, response))
        if isinstance(response, Exception) or response.status_code not in expect:
            self.stopped = (label, response)
            return None
        return response

    @property
    def ok(self) -> bool:
        return self.stopped is None


def body_in_pieces(data: bytes) -> Iterator[bytes]:
    # Chunked transfer encoding, no Content-Length: how docker and podman send a layer.
    return (data[i : i + MiB] for i in range(0, len(data), MiB))


def push_blob(steps: Steps, repo: str, data: bytes, mode: str, chunk: int = 4 * MiB) -> None:
    """mode: "post" (monolithic POST ?digest=), "stream" (POST, one PATCH without
    Content-Range, empty PUT), "chunks" (POST, Content-Range PATCHes, empty PUT)."""
    digest = sha256(data)
    if mode == "post":
        steps.send("POST ?digest=", "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", {201}, content=data)
        return
    response = steps.send("POST", "POST", f"/v2/{repo}/blobs/uploads/", {202})
    if response is None:
        return
    if mode == "stream":
        response = steps.send(
            "PATCH streamed",
            "PATCH",
            upload_path(response.headers["Location"]),
            {202},
            content=body_in_pieces(data),
        )
    else:
        for start in range(0, len(data), chunk):
            piece = data[start : start + chunk]
            end = start + len(piece) - 1
            response = steps.send(
                f"PATCH {start}-{end}",
                "PATCH",
                upload_path(response.headers["Location"]),
                {202},
                content=piece,
                headers={"Content-Range": f"{start}-{end}"},
            )
            if response is None:
                return
    if response is None:
        return
    steps.send("PUT ?digest=", "PUT", f"{upload_path(response.headers['Location'])}?digest={digest}", {201})


def put_manifest(steps: Steps, repo: str, image: Image, reference: str) -> None:
    steps.send(
        f"PUT manifest {reference}",
        "PUT",
        f"/v2/{repo}/manifests/{reference}",
        {201},
        content=image.manifest,
        headers={"Content-Type": image.media_type},
    )


def push_image(
    steps: Steps, repo: str, image: Image, tag: str, modes: tuple[str, ...], skip_existing: bool = False
) -> None:
    """``skip_existing``: a blob HEAD finds is not uploaded again (as docker and skopeo
    do when they push an image again)."""
    for blob, mode in zip((image.config, *image.layers), modes, strict=True):
        if skip_existing:
            found = steps.send("HEAD blob", "HEAD", f"/v2/{repo}/blobs/{sha256(blob)}", {200, 404})
            if found is None:
                return
            if found.status_code == 200:
                continue
        push_blob(steps, repo, blob, mode)
    put_manifest(steps, repo, image, tag)


def pushed(h: Any, repo: str, image: Image, tag: str, modes: tuple[str, ...] | None = None) -> Image:
    steps = Steps(h)
    push_image(steps, repo, image, tag, modes or ("post",) * (1 + len(image.layers)))
    assert steps.ok, describe(steps.stopped)
    return image


# --- what the client sees ------------------------------------------------------------------


def describe(stopped: tuple[str, Any] | None) -> str:
    if stopped is None:
        return "succeeded"
    label, response = stopped
    if isinstance(response, Exception):
        return f"{label}: connection dropped ({type(response).__name__}: {response})"
    return f"{label}: {response.status_code} {response.text[:300]}"


def error_code(response: Any) -> str | None:
    """The code of the spec's error envelope, or None when the body is not one."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        errors = response.json()["errors"]
        return errors[0]["code"] if all({"code", "message"} <= set(e) for e in errors) else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


RETRYABLE = {(503, "UNAVAILABLE"), (429, "TOOMANYREQUESTS"), (409, "UPLOAD_BUSY")}


def outcome_of(steps: Steps) -> tuple[str, str | None]:
    """(how the operation ended, the defect if it is one)."""
    if steps.stopped is None:
        return "succeeded", None
    label, response = steps.stopped
    if isinstance(response, Exception):
        return "connection dropped", describe(steps.stopped)
    code = error_code(response)
    if code is None:
        return f"{response.status_code} without envelope", describe(steps.stopped)
    outcome = f"{response.status_code} {code}"
    if (response.status_code, code) in RETRYABLE:
        return outcome, None
    if (response.status_code, code) == (404, "BLOB_UPLOAD_UNKNOWN") and not label.startswith("PUT manifest"):
        return outcome, None  # the client starts the blob over
    return outcome, describe(steps.stopped)


# --- what is visible -------------------------------------------------------------------------


@functools.cache
def _s3_client() -> httpx.Client:
    # One client for the presigned URLs: a new one per GET builds a TLS context each time.
    return httpx.Client(timeout=30)


def blob_problem(h: Any, repo: str, data: bytes) -> str | None:
    """None when the blob pulls from ``repo`` with its digest, else what is wrong."""
    digest = sha256(data)
    response = h.call("GET", f"/v2/{repo}/blobs/{digest}")
    if isinstance(response, Exception) or response.status_code != 307:
        return f"blob {digest[:19]} in {repo}: GET answers {getattr(response, 'status_code', response)}"
    location = response.headers["Location"]
    key = location.split("?", 1)[0]
    if key in h.verified:
        return None
    fetched = _s3_client().get(location)
    if fetched.status_code != 200 or hashlib.sha256(fetched.content).hexdigest() != digest[7:]:
        return f"blob {digest[:19]} in {repo}: S3 gives {fetched.status_code}, {len(fetched.content)} bytes"
    h.verified.add(key)
    return None


def blob_half_visible(h: Any, repo: str, data: bytes) -> str | None:
    """A blob HEAD answers for must pull whole: None if so (or if it is absent)."""
    response = h.call("HEAD", f"/v2/{repo}/blobs/{sha256(data)}")
    if isinstance(response, Exception):
        return f"HEAD blob: {response!r}"
    if response.status_code == 404:
        return None
    if response.status_code != 200 or response.headers.get("Content-Length") != str(len(data)):
        return f"HEAD blob {sha256(data)[:19]}: {response.status_code} {dict(response.headers)}"
    return blob_problem(h, repo, data)


def view(h: Any, repo: str, reference: str, candidates: list[Image]) -> tuple[str, Image | None, str]:
    """("absent" | "whole" | "broken", the image seen, what is broken)."""
    response = h.call("GET", f"/v2/{repo}/manifests/{reference}")
    if isinstance(response, Exception):
        return "broken", None, f"GET manifest {reference}: {response!r}"
    if response.status_code == 404 and error_code(response) == "MANIFEST_UNKNOWN":
        return "absent", None, ""
    if response.status_code != 200:
        return "broken", None, f"GET manifest {reference}: {response.status_code} {response.text[:200]}"
    image = next((c for c in candidates if c.manifest == response.content), None)
    if image is None:
        return "broken", None, f"manifest {reference}: {len(response.content)} bytes nobody pushed there"
    for blob in (image.config, *image.layers):
        problem = blob_problem(h, repo, blob)
        if problem:
            return "broken", image, f"manifest {reference} is visible, but {problem}"
    return "whole", image, ""


# --- scenarios -------------------------------------------------------------------------------


@dataclass
class Context:
    repo: str
    previous: list[tuple[str, str, Image]] = field(default_factory=list)  # (repo, reference, image)
    image: Image | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Scenario:
    name = ""

    def prepare(self, h: Any, ctx: Context) -> None:
        """Fault-free: what exists before the operation, previous images included."""
        previous = pushed(h, ctx.repo, make_image((2048,)), "previous")
        ctx.previous.append((ctx.repo, "previous", previous))
        ctx.previous.append((ctx.repo, previous.digest, previous))

    def operate(self, h: Any, ctx: Context) -> Steps:
        raise NotImplementedError

    def after(self, h: Any, ctx: Context, steps: Steps, fault: Fault | None) -> list[str]:
        """What must hold right after the (faulted) operation."""
        return []

    def excuse(self, h: Any, ctx: Context, steps: Steps, fault: Fault) -> str | None:
        """A note, when an answer that is not success is right after all."""
        return None

    def retry(self, h: Any, ctx: Context) -> list[str]:
        """The client tries again, without faults: must succeed."""
        raise NotImplementedError


def image_problems(h: Any, ctx: Context, image: Image, tag: str, succeeded: bool) -> list[str]:
    problems = []
    for reference in (tag, image.digest):
        state, _, problem = view(h, ctx.repo, reference, [image])
        if state == "broken":
            problems.append(f"half-written image visible: {problem}")
        elif succeeded and state != "whole":
            problems.append(f"push answered success, but {reference} is {state}")
    for blob in (image.config, *image.layers):
        problem = blob_half_visible(h, ctx.repo, blob)
        if problem:
            problems.append(f"half-written blob visible: {problem}")
    return problems


class ImagePush(Scenario):
    """A whole image: its blobs uploaded one way, then its manifest with a tag."""

    def __init__(self, name: str, layer_sizes: tuple[int, ...], modes: tuple[str, ...]) -> None:
        self.name, self.layer_sizes, self.modes = name, layer_sizes, modes

    def prepare(self, h: Any, ctx: Context) -> None:
        super().prepare(h, ctx)
        ctx.image = make_image(self.layer_sizes)

    def operate(self, h: Any, ctx: Context) -> Steps:
        steps = Steps(h)
        push_image(steps, ctx.repo, ctx.image, "v1", self.modes)
        return steps

    def after(self, h: Any, ctx: Context, steps: Steps, fault: Fault | None) -> list[str]:
        return image_problems(h, ctx, ctx.image, "v1", steps.ok)

    def retry(self, h: Any, ctx: Context) -> list[str]:
        steps = Steps(h)
        push_image(steps, ctx.repo, ctx.image, "v1", self.modes, skip_existing=True)
        if not steps.ok:
            return [f"retried push failed: {describe(steps.stopped)}"]
        return [f"after the retried push: {p}" for p in image_problems(h, ctx, ctx.image, "v1", True)]


class Commit(Scenario):
    """The closing PUT of a chunked upload, carrying the last chunk: the first chunk went
    in before, without faults. The client then resumes the upload if it still can."""

    name = "commit"
    FIRST, LAST = 4 * MiB, 3 * MiB + 7

    def prepare(self, h: Any, ctx: Context) -> None:
        super().prepare(h, ctx)
        ctx.image = make_image((self.FIRST + self.LAST,))
        start = h.call("POST", f"/v2/{ctx.repo}/blobs/uploads/")
        assert start.status_code == 202, start.text
        response = h.call(
            "PATCH",
            upload_path(start.headers["Location"]),
            content=ctx.image.layers[0][: self.FIRST],
            headers={"Content-Range": f"0-{self.FIRST - 1}"},
        )
        assert response.status_code == 202, response.text
        ctx.data["location"] = upload_path(response.headers["Location"])

    def _close(self, steps: Steps, ctx: Context, label: str) -> None:
        layer = ctx.image.layers[0]
        steps.send(
            label,
            "PUT",
            f"{ctx.data['location']}?digest={sha256(layer)}",
            {201},
            content=layer[self.FIRST :],
            headers={"Content-Range": f"{self.FIRST}-{len(layer) - 1}"},
        )

    def operate(self, h: Any, ctx: Context) -> Steps:
        steps = Steps(h)
        self._close(steps, ctx, "PUT last chunk ?digest=")
        return steps

    def after(self, h: Any, ctx: Context, steps: Steps, fault: Fault | None) -> list[str]:
        layer = ctx.image.layers[0]
        problem = blob_half_visible(h, ctx.repo, layer)
        problems = [f"half-written blob visible: {problem}"] if problem else []
        if steps.ok and blob_problem(h, ctx.repo, layer):
            problems.append(f"commit answered 201, but {blob_problem(h, ctx.repo, layer)}")
        return problems

    def retry(self, h: Any, ctx: Context) -> list[str]:
        layer = ctx.image.layers[0]
        status = h.call("GET", ctx.data["location"])
        if blob_problem(h, ctx.repo, layer) is None:
            STATS.notes["commit: blob was in, nothing to retry"] += 1
        elif status.status_code == 204:
            if status.headers.get("Range") != f"0-{self.FIRST - 1}":
                return [f"upload status after the failed commit: Range {status.headers.get('Range')}"]
            steps = Steps(h)
            self._close(steps, ctx, "PUT last chunk again")
            if steps.ok:
                STATS.notes["commit: resumed"] += 1
            elif outcome_of(steps)[0] == "409 UPLOAD_BUSY":
                # A lease left behind by the failed request: the client starts over.
                STATS.notes["commit: resume refused 409 (lease still held), started over"] += 1
                steps = Steps(h)
                push_blob(steps, ctx.repo, layer, "chunks")
            if not steps.ok:
                return [f"resumed commit failed: {describe(steps.stopped)}"]
        elif status.status_code == 404 and error_code(status) == "BLOB_UPLOAD_UNKNOWN":
            STATS.notes["commit: upload gone, started over"] += 1
            steps = Steps(h)
            push_blob(steps, ctx.repo, layer, "chunks")
            if not steps.ok:
                return [f"restarted upload failed: {describe(steps.stopped)}"]
        else:
            return [f"upload status after the failed commit: {status.status_code} {status.text[:200]}"]
        steps = Steps(h)
        push_blob(steps, ctx.repo, ctx.image.config, "post")
        put_manifest(steps, ctx.repo, ctx.image, "v1")
        if not steps.ok:
            return [f"pushing the rest of the image failed: {describe(steps.stopped)}"]
        return [f"after the retry: {p}" for p in image_problems(h, ctx, ctx.image, "v1", True)]


class ManifestPush(Scenario):
    """The manifest PUT with a tag, its blobs already in; big enough (annotations) to
    live in S3 rather than inline, so S3 and DynamoDB are both called."""

    name = "manifest-put"

    def prepare(self, h: Any, ctx: Context) -> None:
        super().prepare(h, ctx)
        ctx.image = make_image((1024,), extra={"annotations": {"pad": "x" * 200_000}})
        steps = Steps(h)
        for blob in (ctx.image.config, *ctx.image.layers):
            push_blob(steps, ctx.repo, blob, "post")
        assert steps.ok, describe(steps.stopped)

    def operate(self, h: Any, ctx: Context) -> Steps:
        steps = Steps(h)
        put_manifest(steps, ctx.repo, ctx.image, "v1")
        return steps

    def after(self, h: Any, ctx: Context, steps: Steps, fault: Fault | None) -> list[str]:
        return image_problems(h, ctx, ctx.image, "v1", steps.ok)

    def retry(self, h: Any, ctx: Context) -> list[str]:
        steps = Steps(h)
        put_manifest(steps, ctx.repo, ctx.image, "v1")
        if not steps.ok:
            return [f"retried manifest PUT failed: {describe(steps.stopped)}"]
        return [f"after the retry: {p}" for p in image_problems(h, ctx, ctx.image, "v1", True)]


class TagMove(Scenario):
    """`latest` moves from image A to image B (B's blobs already in)."""

    name = "tag-move"

    def prepare(self, h: Any, ctx: Context) -> None:
        first = pushed(h, ctx.repo, make_image((2048,)), "latest")
        ctx.previous.append((ctx.repo, first.digest, first))
        ctx.data["first"] = first
        ctx.image = make_image((1024,))
        steps = Steps(h)
        for blob in (ctx.image.config, *ctx.image.layers):
            push_blob(steps, ctx.repo, blob, "post")
        assert steps.ok, describe(steps.stopped)

    def operate(self, h: Any, ctx: Context) -> Steps:
        steps = Steps(h)
        put_manifest(steps, ctx.repo, ctx.image, "latest")
        return steps

    def after(self, h: Any, ctx: Context, steps: Steps, fault: Fault | None) -> list[str]:
        state, seen, problem = view(h, ctx.repo, "latest", [ctx.data["first"], ctx.image])
        if state != "whole":
            return [f"tag latest is {state} during its move: {problem}"]
        if steps.ok and seen is not ctx.image:
            return ["tag move answered 201, but latest still points at the old image"]
        return image_problems(h, ctx, ctx.image, "latest", False) if seen is ctx.image else []

    def retry(self, h: Any, ctx: Context) -> list[str]:
        steps = Steps(h)
        put_manifest(steps, ctx.repo, ctx.image, "latest")
        if not steps.ok:
            return [f"retried tag move failed: {describe(steps.stopped)}"]
        state, seen, problem = view(h, ctx.repo, "latest", [ctx.data["first"], ctx.image])
        if state == "whole" and seen is ctx.image:
            return []
        return [f"after the retry, latest: {state} {problem}"]


class ManifestDelete(Scenario):
    """DELETE by digest of an image with two tags: the manifest and both tags go, together."""

    name = "manifest-delete"
    TAGS = ("v1", "v2")

    def prepare(self, h: Any, ctx: Context) -> None:
        super().prepare(h, ctx)
        ctx.image = pushed(h, ctx.repo, make_image((1024,)), "v1")
        steps = Steps(h)
        put_manifest(steps, ctx.repo, ctx.image, "v2")
        assert steps.ok, describe(steps.stopped)

    def operate(self, h: Any, ctx: Context) -> Steps:
        steps = Steps(h)
        steps.send("DELETE manifest", "DELETE", f"/v2/{ctx.repo}/manifests/{ctx.image.digest}", {202})
        return steps

    def states(self, h: Any, ctx: Context) -> tuple[set[str], list[str]]:
        seen = [view(h, ctx.repo, ref, [ctx.image]) for ref in (ctx.image.digest, *self.TAGS)]
        return {state for state, _, _ in seen}, [problem for _, _, problem in seen if problem]

    def after(self, h: Any, ctx: Context, steps: Steps, fault: Fault | None) -> list[str]:
        states, problems = self.states(h, ctx)
        if problems or len(states) != 1:
            return [f"half-deleted image: {sorted(states)} {problems}"]
        if steps.ok and states != {"absent"}:
            return ["delete answered 202, but the image is still there"]
        return []

    def excuse(self, h: Any, ctx: Context, steps: Steps, fault: Fault) -> str | None:
        label, response = steps.stopped
        if (
            fault.applied
            and not isinstance(response, Exception)
            and response.status_code == 404
            and error_code(response) == "MANIFEST_UNKNOWN"
            and self.states(h, ctx)[0] == {"absent"}
        ):
            return "delete took effect, its lost reply retried by the SDK: answered 404"
        return None

    def retry(self, h: Any, ctx: Context) -> list[str]:
        states, _ = self.states(h, ctx)
        response = h.call("DELETE", f"/v2/{ctx.repo}/manifests/{ctx.image.digest}")
        expected = 202 if states == {"whole"} else 404
        if isinstance(response, Exception) or response.status_code != expected:
            return [f"retried delete: {getattr(response, 'status_code', response)}, expected {expected}"]
        states, problems = self.states(h, ctx)
        if states != {"absent"}:
            return [f"after the retried delete: {sorted(states)} {problems}"]
        pushed(h, ctx.repo, ctx.image, "v1")  # and it can be pushed again
        return image_problems(h, ctx, ctx.image, "v1", True)


class BlobDelete(Scenario):
    """DELETE of a blob in one repository; the same blob in another stays."""

    name = "blob-delete"

    def prepare(self, h: Any, ctx: Context) -> None:
        super().prepare(h, ctx)
        ctx.data["blob"] = blob = os.urandom(4096)
        steps = Steps(h)
        push_blob(steps, ctx.repo, blob, "post")
        push_blob(steps, f"{ctx.repo}-other", blob, "post")
        assert steps.ok, describe(steps.stopped)

    def operate(self, h: Any, ctx: Context) -> Steps:
        steps = Steps(h)
        steps.send("DELETE blob", "DELETE", f"/v2/{ctx.repo}/blobs/{sha256(ctx.data['blob'])}", {202})
        return steps

    def present(self, h: Any, ctx: Context) -> bool:
        return h.call("HEAD", f"/v2/{ctx.repo}/blobs/{sha256(ctx.data['blob'])}").status_code == 200

    def after(self, h: Any, ctx: Context, steps: Steps, fault: Fault | None) -> list[str]:
        problems = []
        problem = blob_half_visible(h, ctx.repo, ctx.data["blob"])
        if problem:
            problems.append(f"half-deleted blob: {problem}")
        if steps.ok and self.present(h, ctx):
            problems.append("blob delete answered 202, but the blob is still there")
        problem = blob_problem(h, f"{ctx.repo}-other", ctx.data["blob"])
        if problem:
            STATS.images_lost_or_corrupt += 1
            problems.append(f"the other repository lost the blob: {problem}")
        return problems

    def excuse(self, h: Any, ctx: Context, steps: Steps, fault: Fault) -> str | None:
        label, response = steps.stopped
        if (
            fault.applied
            and not isinstance(response, Exception)
            and response.status_code == 404
            and error_code(response) == "BLOB_UNKNOWN"
            and not self.present(h, ctx)
        ):
            return "delete took effect, its lost reply retried by the SDK: answered 404"
        return None

    def retry(self, h: Any, ctx: Context) -> list[str]:
        expected = 202 if self.present(h, ctx) else 404
        response = h.call("DELETE", f"/v2/{ctx.repo}/blobs/{sha256(ctx.data['blob'])}")
        if isinstance(response, Exception) or response.status_code != expected:
            return [f"retried blob delete: {getattr(response, 'status_code', response)}, expected {expected}"]
        return ["blob still there after the retried delete"] if self.present(h, ctx) else []


LAYER = 5 * MiB + 4099  # one full 5 MiB part and a short one
SCENARIOS: list[Callable[[], Scenario]] = [
    lambda: ImagePush("monolithic", (300_000,), ("post", "post")),
    lambda: ImagePush("streamed", (LAYER,), ("stream", "stream")),
    lambda: ImagePush("chunked", (8 * MiB - 100,), ("post", "chunks")),
    Commit,
    ManifestPush,
    TagMove,
    ManifestDelete,
    BlobDelete,
]


def run_once(
    h: Any, scenario: Scenario, label: str, number: int | None = None, fault: Fault | None = None
) -> tuple[Steps, list, list[str]]:
    ctx = Context(h.repo(scenario.name, label))
    scenario.prepare(h, ctx)
    before = len(h.tracebacks.seen)
    with h.injector.armed(number, fault) as calls:
        steps = scenario.operate(h, ctx)
    problems: list[str] = []
    outcome, defect = outcome_of(steps)
    if defect and fault is not None:
        note = scenario.excuse(h, ctx, steps, fault)
        if note:
            STATS.notes[f"{scenario.name}: {note}"] += 1
            outcome, defect = f"{outcome} (took effect)", None
    if defect:
        raised = h.tracebacks.seen[before:]
        problems.append(f"not a retryable answer: {defect}" + (f" [raised {raised[-1]}]" if raised else ""))
    elif fault is not None and not fault.every_attempt and not steps.ok and "(took effect)" not in outcome:
        # Only the first attempt failed and the SDK's retry went through: the client
        # must not see the fault at all (a retried write that had taken effect is ours).
        problems.append(f"a fault the SDK's retry absorbed still failed the operation: {outcome}")
    problems += scenario.after(h, ctx, steps, fault)
    problems += scenario.retry(h, ctx)
    for repo, reference, image in ctx.previous:
        state, _, problem = view(h, repo, reference, [image])
        if state != "whole":
            STATS.images_lost_or_corrupt += 1
            problems.append(f"previously pushed {reference[:19]} is {state}: {problem}")
    if any(p.startswith(("half-", "after the")) for p in problems):
        STATS.images_lost_or_corrupt += 1
    if fault is not None:
        STATS.operations += 1
        STATS.outcomes[outcome] += 1
    empty_bucket(h)
    return steps, list(calls), problems


def empty_bucket(h: Any) -> None:
    """The run's bytes go once it is judged (each run has repositories of its own): moto
    keeps every object in memory, and slows down as hundreds of MiB pile up."""
    s3, bucket = h.registry.clients.s3, h.registry.settings.bucket
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})


@pytest.mark.parametrize("make", SCENARIOS, ids=lambda make: make().name)
def test_fault_at_every_call(harness, make):
    scenario = make()
    steps, calls, problems = run_once(harness, scenario, "dry-run")
    assert steps.ok and not problems, (describe(steps.stopped), problems)
    plan = [f"{c.service} {c.operation}" for c in calls]
    assert plan, "the operation made no storage call"
    found = []
    for number, fault in each_fault(len(plan), everything=os.environ.get("SKYPORT_FAULTS") == "all"):
        _, faulted_calls, problems = run_once(harness, scenario, f"k{number}-{fault.name}", number, fault)
        where = faulted_calls[number - 1] if len(faulted_calls) >= number else None
        call = f"{where.service} {where.operation}" if where else f"(only {len(faulted_calls)} calls)"
        found += [f"call {number}/{len(plan)} {call}, {fault.name}: {problem}" for problem in problems]
    assert not found, f"{scenario.name}: {len(found)} violations\n" + "\n".join(found)
