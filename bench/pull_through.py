"""Section "pullthrough": skopeo pulling through a cache, cold and warm: Skyport's
pull-through cache (issue 13) against Distribution in proxy mode (``proxy: remoteurl:``),
both in front of the same upstream.

The upstream is Distribution on S3 (the run's moto, redirects on), as Docker Hub, ghcr
and ECR answer blob GETs with a redirect to their storage. Skyport (``skyport serve``,
a rule added with ``skyport cache add``) and the Distribution proxy (on S3 too, its own
bucket, redirects on) each have their own bucket on the same moto.

Each run pulls a new image (its own repository in the upstream, the same layer sizes),
so "cold" is really cold for both caches: first through each cache (the order rotating
between runs), then, once both have stored everything, "warm": the same image again.
Waiting for the stores is not measured: Skyport fills asynchronously (the row notes how
long its fills took after the cold pull ended), the proxy while it streams.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import services
from .clients import Skopeo
from .images import build_layout
from .profiles import Profile, human

PREFIX = "pt"  # Skyport's cache rule: pt/<name> pulls <name> from the upstream
STORE_TIMEOUT = 600.0

FOOTNOTE = [
    "cold: the cache holds nothing of the image. Skyport answers the manifest from upstream",
    "  (and stores it), and every blob with a redirect to the upstream's own storage (it follows",
    "  the upstream's 307 server-side), copying the blob into its S3 asynchronously; the client",
    "  never waits on the copy. Distribution's proxy streams every blob through itself from",
    "  upstream while it stores it.",
    "warm: the cache holds the whole image. Skyport serves the tag from its table without asking",
    "  upstream (within SKYPORT_CACHE_TAG_RECHECK_SECONDS) and redirects blobs to its S3;",
    "  Distribution's proxy asks upstream for the tag (a HEAD) on every pull, then redirects",
    "  blobs to its S3.",
]


def _image_blobs(layout_path: Path, tag: str) -> tuple[str, list[str]]:
    """The manifest digest of ``tag`` in an OCI layout, and its blobs (config, layers)."""
    index = json.loads((layout_path / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    manifest = json.loads((layout_path / "blobs" / "sha256" / entry["digest"].split(":", 1)[1]).read_bytes())
    return entry["digest"], [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def start_distribution_proxy(work: Path, endpoint: str, name: str, remote: str) -> services.Registry:
    """Distribution in proxy mode in front of ``remote``, on S3 (its own bucket, redirects on)."""
    port = services.free_port()
    bucket = f"{name}-blobs"
    services.boto_client("s3", endpoint).create_bucket(Bucket=bucket)
    driver = services.S3_DRIVER.format(
        key=services.AWS_KEYS["AWS_ACCESS_KEY_ID"],
        secret=services.AWS_KEYS["AWS_SECRET_ACCESS_KEY"],
        region=services.REGION,
        endpoint=endpoint,
        bucket=bucket,
    )
    config = work / name / "config.yml"
    config.parent.mkdir(parents=True, exist_ok=True)
    text = services.DISTRIBUTION_CONFIG.format(
        redirect_disabled="false", driver=driver.rstrip("\n"), addr=f"{services.LOOPBACK}:{port}"
    )
    config.write_text(text + f"proxy:\n  remoteurl: {remote}\n")
    env = services.child_env()
    env.pop("AWS_CA_BUNDLE", None)  # its S3 driver panics with it (services.start_distribution)
    proc = services.Process(
        name, ["docker-registry", "serve", str(config)], work / "logs" / f"{name}.log", env=env
    ).start()
    reg = services.Registry("distribution-proxy", f"{services.LOOPBACK}:{port}", proc)
    proc.wait_http(f"{reg.url}/v2/")
    return reg


def _add_rule(skyport: services.Registry, upstream: services.Registry) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "skyport_cli", "cache", "add", PREFIX, upstream.url],
        env=skyport.process.env,
        cwd=skyport.process.cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"skyport cache add {PREFIX} {upstream.url}: {result.stderr or result.stdout}")


def _wait(what: str, done: Callable[[], bool]) -> None:
    """Poll ``done`` until true."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > STORE_TIMEOUT:
            raise RuntimeError(f"{what}: not stored after {STORE_TIMEOUT:.0f} s")
        time.sleep(0.2)


def _skyport_filled(endpoint: str, table: str, repository: str, digests: list[str]) -> Callable[[], bool]:
    from skyport.storage import keys

    dynamodb = services.boto_client("dynamodb", endpoint)

    def done() -> bool:
        return all(
            "Item" in dynamodb.get_item(TableName=table, Key=keys.blob_link(repository, d)) for d in digests
        )

    return done


def _proxy_stored(endpoint: str, bucket: str, digests: list[str]) -> Callable[[], bool]:
    """Distribution's storage layout: docker/registry/v2/blobs/sha256/<2>/<hex>/data."""
    s3 = services.boto_client("s3", endpoint)

    def done() -> bool:
        for digest in digests:
            encoded = digest.split(":", 1)[1]
            key = f"docker/registry/v2/blobs/sha256/{encoded[:2]}/{encoded}/data"
            if s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount", 0) == 0:
                return False
        return True

    return done


def row_name(profile: Profile) -> str:
    sizes = " + ".join(human(s) for s in profile.multi_layers)
    return f"skopeo pull of 1 image ({len(profile.multi_layers)} layers: {sizes}) through a cache"


def run(
    profile: Profile, work: Path, backend: services.Backend, skopeo: Skopeo, log: Callable[[str], None]
) -> dict:
    backend.reset()
    endpoint = backend.endpoint
    runs = profile.runs
    layout = build_layout(
        work / "img-pull-through", {f"r{run}": list(profile.multi_layers) for run in range(runs)}
    )
    name = row_name(profile)
    started: list[services.Registry] = []
    samples: dict[str, list[float]] = {
        f"{label}_{phase}": [] for label in ("skyport", "proxy") for phase in ("cold", "warm")
    }
    fill_s: list[float] = []
    try:
        upstream = services.start_distribution(work, endpoint, "pt-upstream")
        started.append(upstream)
        skyport = services.start_skyport(work, endpoint, "skyport-pt")
        started.append(skyport)
        proxy = start_distribution_proxy(work, endpoint, "distribution-pt-proxy", upstream.url)
        started.append(proxy)
        _add_rule(skyport, upstream)
        for run in range(runs):
            skopeo.copy(layout.ref(f"r{run}"), f"docker://{upstream.host}/bench/pt-r{run}:1")
        caches = {"skyport": (skyport, f"{PREFIX}/"), "proxy": (proxy, "")}
        for run in range(runs):
            _, digests = _image_blobs(layout.path, f"r{run}")
            order = ["skyport", "proxy"] if run % 2 == 0 else ["proxy", "skyport"]
            for phase in ("cold", "warm"):
                for label in order:
                    reg, prefix = caches[label]
                    target = skopeo.scratch()
                    try:
                        seconds = skopeo.copy(
                            f"docker://{reg.host}/{prefix}bench/pt-r{run}:1", f"dir:{target}"
                        )
                    finally:
                        skopeo.drop(target)
                    samples[f"{label}_{phase}"].append(seconds)
                    if label == "skyport":
                        skyport_done = time.monotonic()
                    log(f"  pull through a cache  {label:<8} {phase}  run {run + 1}/{runs}  {seconds:7.2f} s")
                if phase == "cold":
                    repository = f"{PREFIX}/bench/pt-r{run}"
                    filled = _skyport_filled(endpoint, "skyport-pt-metadata", repository, digests)
                    _wait("Skyport's fills", filled)
                    fill_s.append(time.monotonic() - skyport_done)
                    stored = _proxy_stored(endpoint, "distribution-pt-proxy-blobs", digests)
                    _wait("Distribution proxy's store", stored)
    finally:
        for reg in started:
            reg.process.stop()
    medians = {key: statistics.median(values) for key, values in samples.items()}
    return {
        "name": name,
        "runs": runs,
        "skyport_cold_s": round(medians["skyport_cold"], 3),
        "skyport_warm_s": round(medians["skyport_warm"], 3),
        "proxy_cold_s": round(medians["proxy_cold"], 3),
        "proxy_warm_s": round(medians["proxy_warm"], 3),
        "ratio_cold": round(medians["skyport_cold"] / medians["proxy_cold"], 3),
        "ratio_warm": round(medians["skyport_warm"] / medians["proxy_warm"], 3),
        "skyport_fill_after_cold_s": round(statistics.median(fill_s), 3),
        "samples_s": {key: [round(t, 3) for t in values] for key, values in samples.items()},
    }


def render(row: dict) -> list[str]:
    title = "Pull-through cache: Skyport vs Distribution proxy mode, same upstream (skopeo, median of runs)"
    if "error" in row:
        return [title, "", f"   not measured: {row['error']}"]

    def spread(values: list[float]) -> str:
        return f"{min(values):.2f}-{max(values):.2f}"

    samples = row["samples_s"]
    lines = [f"{'':<6}{'Skyport':>10}{'Distribution proxy':>21}{'ratio':>8}   runs, s (Skyport | proxy)"]
    for phase in ("cold", "warm"):
        lines.append(
            f"{phase:<6}{row[f'skyport_{phase}_s']:>9.2f}s{row[f'proxy_{phase}_s']:>20.2f}s"
            f"{row[f'ratio_{phase}']:>7.2f}x   "
            f"{spread(samples[f'skyport_{phase}'])} | {spread(samples[f'proxy_{phase}'])}"
        )
    return [
        title,
        f"   {row['name']}, {row['runs']} runs; Skyport's fills finished "
        f"{row['skyport_fill_after_cold_s']:.2f} s after the cold pull (median)",
        "",
        *("   " + line for line in lines),
        "",
        *("   " + line for line in FOOTNOTE),
    ]
