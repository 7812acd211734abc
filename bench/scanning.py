"""Section "scan" (issue 14): scanning an image of 300 MiB of layers stored in S3.

The image is three gzip layers of about 100 MiB each (expanded), fresh random hex digits
(which gzip halves, as it does real layers; the scanner inflates and walks every byte)
around the files that identify
software: os-release and a dpkg status in the base, Python dist-info and npm packages in
the next, a jar in the last. The layers go into a bucket of the section's own standalone
moto server; each run is a new process that reads them through ``get_object(...)["Body"]``
(as the scan service does), runs ``scan_image`` and ``cyclonedx_json``, and reports its
times and its peak RSS (VmHWM, the kernel's high-water mark for that process alone).

Distribution has no scanner, so the row has no counterpart: Harbor and zot run Trivy as a
server beside the registry, which is not comparable to one function invocation.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

from . import services
from .profiles import Profile, human

MiB = 1 << 20
LAYER_BYTES = {"full": 100 * MiB, "tiny": 8 * MiB}  # three layers each
RUNS = 3
BUCKET = "scan-bench"

SCAN = """
import json, sys, time
import boto3
from skyport.scanning.image import scan_image
from skyport.scanning.layers import LayerSource
from skyport.scanning.sbom import cyclonedx_json

def peak():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) * 1024

endpoint, bucket, keys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint)
layers = [
    LayerSource(key, "application/vnd.oci.image.layer.v1.tar+gzip", size,
                lambda key=key: s3.get_object(Bucket=bucket, Key=key)["Body"])
    for key, size in keys
]
before = peak()
started = time.monotonic()
inventory = scan_image(layers)
scanned = time.monotonic()
sbom = cyclonedx_json(inventory, repository="bench/scan", digest="sha256:" + "0" * 64)
done = time.monotonic()
print(json.dumps({
    "scan_s": scanned - started, "sbom_s": done - scanned, "rss_before": before, "rss_peak": peak(),
    "packages": len(inventory.packages), "skipped": [gap.reason for gap in inventory.skipped],
    "sbom_bytes": len(sbom),
}))
"""


def _tar_gz(path: Path, files: list[tuple[str, bytes | int]]) -> None:
    """A gzip'd tar written as it is made: (name, content) or (name, size of random data)."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    # Random hex digits: 4 bits of entropy a byte, so gzip halves them (real layers shrink 2-3x)
    # and inflating them is real Huffman decoding, not the copying of stored blocks that fully
    # random data gives; repeated every MiB, which gzip's 32 KiB window never sees.
    block = os.urandom(MiB // 2).hex().encode()
    with path.open("wb") as out:
        for name, content in files:
            size = content if isinstance(content, int) else len(content)
            info = tarfile.TarInfo(name)
            info.size, info.mode = size, 0o644
            out.write(deflate.compress(info.tobuf(format=tarfile.PAX_FORMAT)))
            if isinstance(content, int):
                for start in range(0, size, MiB):
                    out.write(deflate.compress(block[: min(MiB, size - start)]))
            else:
                out.write(deflate.compress(content))
            out.write(deflate.compress(bytes(-size % tarfile.BLOCKSIZE)))
        out.write(deflate.compress(bytes(2 * tarfile.BLOCKSIZE)) + deflate.flush())


def _jar() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
            "groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n",
        )
    return buffer.getvalue()


def build_image(directory: Path, layer_bytes: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    status = "".join(
        f"Package: pkg{index}\nStatus: install ok installed\nVersion: 1.{index}-1\nArchitecture: amd64\n\n"
        for index in range(300)
    ).encode()
    site = "usr/lib/python3/dist-packages"
    python = [(f"{site}/lib{i}-1.0.dist-info/METADATA", b"Name: lib%d\nVersion: 1\n" % i) for i in range(50)]
    npm = [
        (f"app/node_modules/mod{i}/package.json", b'{"name": "mod%d", "version": "1.0.0"}' % i)
        for i in range(200)
    ]
    layers: dict[str, list[tuple[str, bytes | int]]] = {
        "base": [
            ("etc/os-release", b'ID=debian\nVERSION_ID="12"\n'),
            ("var/lib/dpkg/status", status),
            ("usr/lib/data.bin", layer_bytes),
        ],
        "app": [*python, *npm, ("app/assets.bin", layer_bytes)],
        "data": [("app/lib/log4j-core-2.14.1.jar", _jar()), ("srv/blob.bin", layer_bytes)],
    }
    paths = []
    for name, files in layers.items():
        path = directory / f"{name}.tar.gz"
        _tar_gz(path, files)
        paths.append(path)
    return paths


def run(profile: Profile, work: Path, log) -> dict:
    layer_bytes = LAYER_BYTES.get(profile.name, LAYER_BYTES["full"])
    paths = build_image(work / "scan-image", layer_bytes)
    stored = sum(path.stat().st_size for path in paths)
    with services.Backend(work, "moto-scan") as backend:
        s3 = services.boto_client("s3", backend.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        keys = []
        for path in paths:
            s3.upload_file(str(path), BUCKET, path.name)
            keys.append((path.name, path.stat().st_size))
        for path in paths:
            path.unlink()
        samples = []
        for index in range(RUNS):
            result = subprocess.run(
                [sys.executable, "-c", SCAN, backend.endpoint, BUCKET, json.dumps(keys)],
                capture_output=True,
                text=True,
                timeout=600,
                env=services.child_env(),
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"scan run {index} failed: {result.stderr.strip().splitlines()[-1:]}")
            sample = json.loads(result.stdout)
            samples.append(sample)
            log(
                f"  scan run {index + 1}: {sample['scan_s']:.1f} s scan, "
                f"{sample['sbom_s'] * 1000:.0f} ms SBOM, "
                f"peak RSS {sample['rss_peak'] / MiB:.0f} MiB, {sample['packages']} packages"
            )
    return {
        "name": f"scan an image of 3 gzip layers, {human(3 * layer_bytes)} expanded, from S3",
        "stored_bytes": stored,
        "expanded_bytes": 3 * layer_bytes,
        "runs": RUNS,
        "scan_s": statistics.median(sample["scan_s"] for sample in samples),
        "sbom_s": statistics.median(sample["sbom_s"] for sample in samples),
        "rss_peak_bytes": max(sample["rss_peak"] for sample in samples),
        "rss_before_bytes": max(sample["rss_before"] for sample in samples),
        "packages": samples[0]["packages"],
        "skipped": samples[0]["skipped"],
        "samples": samples,
    }


def render(section: dict) -> list[str]:
    if "error" in section:
        return ["Scan (issue 14): the section failed: " + section["error"]]
    throughput = section["expanded_bytes"] / MiB / section["scan_s"] if section["scan_s"] else 0.0
    return [
        "Scan (issue 14): scan_image + cyclonedx_json in a fresh process, layers streamed from S3 (moto)",
        f"  {section['name']}: scan {section['scan_s']:.1f} s ({throughput:.0f} MiB/s), "
        f"SBOM {section['sbom_s'] * 1000:.0f} ms, median of {section['runs']}; "
        f"peak RSS {section['rss_peak_bytes'] / MiB:.0f} MiB "
        f"({section['rss_before_bytes'] / MiB:.0f} MiB before the scan); {section['packages']} packages, "
        f"{len(section['skipped'])} skipped",
        "  Distribution: no counterpart (it has no scanner; Harbor and zot run Trivy as a separate server)",
    ]
