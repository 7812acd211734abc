"""Scanning streams: a 300 MiB layer (incompressible files, gzip, with identifying files at
both ends) is scanned in a fresh process whose peak RSS grows by a small fraction of the
layer's size (the kernel's high-water mark, before and after the scan), and whose peak as a
whole stays below the layer's size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .images import write_gzip_tar

MiB = 1 << 20
LAYER_SIZE = 300 * MiB
GROWTH_BUDGET = 64 * MiB  # a few MiB of buffers and parsed files; never the layer
PEAK_BUDGET = 200 * MiB  # the whole process, Python and its imports included

SCAN = """
import json, sys, time
from skyport.scanning.image import scan_image
from skyport.scanning.layers import LayerSource
from skyport.scanning.sbom import cyclonedx_json

def peak():
    # VmHWM: this process's own high-water mark (ru_maxrss carries the parent's across exec).
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

path, size = sys.argv[1], int(sys.argv[2])
before = peak()
started = time.monotonic()
inventory = scan_image([LayerSource("sha256:big", "application/vnd.oci.image.layer.v1.tar+gzip", size,
                                    lambda: open(path, "rb"))])
sbom = cyclonedx_json(inventory, repository="bench/big", digest="sha256:" + "0" * 64)
print(json.dumps({"before": before, "after": peak(), "seconds": time.monotonic() - started,
                  "packages": [p.purl for p in inventory.packages], "skipped": len(inventory.skipped)}))
"""


def test_scanning_a_300_mib_layer_keeps_memory_far_below_its_size(tmp_path: Path) -> None:
    block = os.urandom(MiB)  # gzip's window is 32 KiB: a repeated MiB does not compress
    status = b"Package: bash\nVersion: 5.2.15-2+b2\nArchitecture: amd64\n\n"
    package_json = b'{"name": "left-pad", "version": "1.3.0"}'
    files = [("var/lib/dpkg/status", len(status), status)]
    files += [(f"srv/data/{index}.bin", 10 * MiB, block) for index in range(LAYER_SIZE // (10 * MiB))]
    files += [("app/node_modules/left-pad/package.json", len(package_json), package_json)]
    layer = tmp_path / "layer.tar.gz"
    with layer.open("wb") as out:
        write_gzip_tar(out, files)
    assert layer.stat().st_size > 290 * MiB

    result = subprocess.run(
        [sys.executable, "-c", SCAN, str(layer), str(layer.stat().st_size)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    measured = json.loads(result.stdout)

    assert measured["packages"] == [
        "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64",
        "pkg:npm/left-pad@1.3.0",
    ]
    assert measured["skipped"] == 0
    growth = measured["after"] - measured["before"]
    print(
        f"300 MiB layer scanned in {measured['seconds']:.1f} s; peak RSS {measured['after'] / MiB:.0f} MiB "
        f"(interpreter and libraries included), {growth / MiB:.1f} MiB above the peak before the scan"
    )
    assert growth < GROWTH_BUDGET
    assert measured["after"] < PEAK_BUDGET
