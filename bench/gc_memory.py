"""Garbage collection's memory on a big table (issue 12): ``python -m bench.gc_memory``.

Generates a registry's table in a standalone moto server (bench/moto_server.py, another
process: its memory is not ours), written directly with BatchWriteItem, and grows it in
steps (50k, 100k, 200k items by default). At each step it runs the collector (a real run,
or a dry run: --runs) under tracemalloc, and prints the peak of Python
memory allocated during the run, and the process's maximum resident set size.

The table: repositories of images, each image a MANIFEST item (its body inline), a TAG
item and three links (config, a layer of its own, a base layer shared by many images);
a META item per distinct blob; a catalog entry per repository. One image in ten has lost
its manifest (deleted): its links and its own blobs are garbage. No blob has an S3 object
(the bytes do not matter to memory); a sample of orphan objects is put under blobs/.

What grows with the table, by design (skyport/gc/__init__.py): 8 bytes per blob in the
orphan phase's live-key set (and, in a dry run, 8 bytes per surviving link for the marks).
Everything else is a page, one repository's references, and a bounded LRU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from .services import AWS_KEYS, REGION, boto_client, start_moto

IMAGES_PER_REPOSITORY = 200
ITEMS_PER_IMAGE = 7  # manifest, tag, 3 links, 2 META (config and own layer)
BASE_LAYERS = 50
ORPHANS = 100


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class Generator:
    def __init__(self, dynamodb, s3, table: str, bucket: str) -> None:
        self._dynamodb, self._s3 = dynamodb, s3
        self.table, self.bucket = table, bucket
        self.images = 0
        self.items = 0
        self.blobs = 0
        self._pending: list[dict] = []

    def _put(self, item: dict) -> None:
        self._pending.append({"PutRequest": {"Item": item}})
        self.items += 1
        if len(self._pending) == 25:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        request = {self.table: self._pending}
        while request:
            answer = self._dynamodb.batch_write_item(RequestItems=request)
            request = answer.get("UnprocessedItems") or {}
        self._pending = []

    def _blob(self, digest: str, size: int) -> None:
        self.blobs += 1
        self._put(
            {
                "PK": {"S": f"BLOB#{digest}"},
                "SK": {"S": "META"},
                "digest": {"S": digest},
                "size_bytes": {"N": str(size)},
                "s3_key": {"S": f"blobs/{digest[7:43]}"},
            }
        )

    def _link(self, repository: str, digest: str, size: int) -> None:
        self._put(
            {
                "PK": {"S": f"REPO#{repository}"},
                "SK": {"S": f"BLOB#{digest}"},
                "digest": {"S": digest},
                "size_bytes": {"N": str(size)},
                "s3_key": {"S": f"blobs/{digest[7:43]}"},
            }
        )

    def start(self) -> None:
        for number in range(BASE_LAYERS):
            self._blob(_digest(f"base {number}"), 30_000_000)
        self._flush()

    def grow_to(self, target_items: int) -> None:
        while self.items < target_items:
            number = self.images
            repository = f"team{number // IMAGES_PER_REPOSITORY}/app"
            if number % IMAGES_PER_REPOSITORY == 0:
                self._put({"PK": {"S": "CATALOG"}, "SK": {"S": f"REPO#{repository}"}})
            config, layer = _digest(f"config {number}"), _digest(f"layer {number}")
            base = _digest(f"base {number % BASE_LAYERS}")
            for digest, size in ((config, 1500), (layer, 5_000_000)):
                self._blob(digest, size)
                self._link(repository, digest, size)
            self._link(repository, base, 30_000_000)
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": config,
                        "size": 1500,
                    },
                    "layers": [
                        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}
                        for d, s in ((base, 30_000_000), (layer, 5_000_000))
                    ],
                }
            ).encode()
            manifest = _digest(f"manifest {number}")
            attributes = {
                "digest": {"S": manifest},
                "media_type": {"S": "application/vnd.oci.image.manifest.v1+json"},
                "size_bytes": {"N": str(len(body))},
                "body_inline": {"B": body},
            }
            deleted = number % 10 == 9  # its manifest and tag gone: its links are garbage
            if not deleted:
                self._put(
                    {"PK": {"S": f"REPO#{repository}"}, "SK": {"S": f"MANIFEST#{manifest}"}, **attributes}
                )
                self._put({"PK": {"S": f"REPO#{repository}"}, "SK": {"S": f"TAG#v{number}"}, **attributes})
            self.images += 1
        self._flush()

    def orphans(self, count: int) -> None:
        for number in range(count):
            self._s3.put_object(
                Bucket=self.bucket, Key=f"blobs/orphan-{self.items}-{number}", Body=b"x" * 100
            )


def _measure(registry, dry_run: bool, page_size: int) -> tuple[dict, float, int]:
    # The clients first, outside the measurement: botocore's service models are ~15 MB
    # loaded once per process, whatever the table holds.
    registry.clients.dynamodb.describe_table(TableName=registry.settings.table)
    registry.clients.s3.head_bucket(Bucket=registry.settings.bucket)
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.monotonic()
    report = registry.gc.run(0, dry_run=dry_run, page_size=page_size)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return report, elapsed, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", default="50000,100000,200000", help="table sizes, in items (comma-separated)"
    )
    # DynamoDB returns at most 1 MB a page whatever the Limit; moto the same. Big pages keep
    # moto's scans (which skip from the table's start on every page) affordable.
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument(
        "--runs",
        choices=("real", "dry", "both"),
        default="real",
        help="which runs to measure at each step: a dry run writes nothing (no marks: moto takes "
        "~10-30 ms a write, the bulk of a real run's time here) and holds more in memory (8 bytes "
        "a surviving link instead of marks), so it bounds the real run's memory from above",
    )
    args = parser.parse_args(argv)
    steps = [int(step) for step in args.steps.split(",")]

    os.environ.update(AWS_KEYS)
    from skyport.config import Settings
    from skyport.registry import Registry
    from skyport_cli.stack import load_template, table_create_kwargs

    work = Path(tempfile.mkdtemp(prefix="skyport-gc-memory-"))
    moto, endpoint = start_moto(work)
    try:
        settings = Settings(
            bucket="gc-memory",
            table="gc-memory",
            region=REGION,
            s3_endpoint=endpoint,
            dynamodb_endpoint=endpoint,
        )
        dynamodb, s3 = boto_client("dynamodb", endpoint), boto_client("s3", endpoint)
        # The table as template.yaml defines it, but without its stream: the collector reads
        # none, and moto keeps a copy of every write's images in it (its time and memory).
        table = {
            k: v
            for k, v in table_create_kwargs(load_template(), settings.table).items()
            if k != "StreamSpecification"
        }
        dynamodb.create_table(**table)
        s3.create_bucket(Bucket=settings.bucket)
        generator = Generator(dynamodb, s3, settings.table, settings.bucket)
        generator.start()
        header = f"{'items':>8} {'blobs':>7} {'run':>5} {'seconds':>8} {'peak MiB':>9} {'maxrss MiB':>11}"
        print(f"{header}  removed (links/blobs/objects)")
        peaks: list[tuple[int, int]] = []
        for step in steps:
            generator.grow_to(step)
            generator.orphans(ORPHANS)
            # Let the orphans age past the cutoff's one-second resolution (S3 LastModified).
            time.sleep(1.1)
            blobs = generator.blobs
            for dry_run in {"real": (False,), "dry": (True,), "both": (True, False)}[args.runs]:
                registry = Registry(settings)
                report, seconds, peak = _measure(registry, dry_run, args.page_size)
                maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                peaks.append((blobs, peak))
                removed = "/".join(str(report["removed"][kind]) for kind in ("links", "blobs", "objects"))
                print(
                    f"{generator.items:>8} {blobs:>7} {'dry' if dry_run else 'real':>5} {seconds:>8.1f} "
                    f"{peak / 2**20:>9.2f} {maxrss:>11.1f}  {removed}",
                    flush=True,
                )
        if len(peaks) > 1:
            (blobs_first, peak_first), (blobs_last, peak_last) = peaks[0], peaks[-1]
            per_blob = (peak_last - peak_first) / max(blobs_last - blobs_first, 1)
            print(f"peak grows {per_blob:.1f} bytes per blob ({blobs_first} -> {blobs_last} blobs)")
    finally:
        moto.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
