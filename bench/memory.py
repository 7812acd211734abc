"""Peak resident memory of a registry process while clients stream layers into it.

Each case runs against a fresh server process, warmed up by one small push (so
imports and SDK clients are loaded), then idle. The peak comes from the kernel's
high-water mark (VmHWM, reset through /proc/PID/clear_refs) and from sampling
VmRSS every 10 ms; growth is that peak minus the idle RSS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .clients import Skopeo
from .images import Layout
from .services import Registry, peak_rss, reset_peak, rss


class Sampler:
    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss(self._pid))
            except (OSError, KeyError):
                return
            self._stop.wait(self._interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(reg: Registry, skopeo: Skopeo, pairs: list[tuple[str, str]]) -> dict:
    pid = reg.process.pid
    time.sleep(0.5)  # let the warm-up's buffers go
    idle = rss(pid)
    hwm_reset = reset_peak(pid)
    with Sampler(pid) as sampler:
        seconds = skopeo.copy_parallel(pairs)
    peak = max(sampler.peak, peak_rss(pid) if hwm_reset else 0)
    return {
        "idle_rss_bytes": idle,
        "peak_rss_bytes": peak,
        "growth_bytes": max(peak - idle, 0),
        "seconds": round(seconds, 3),
        "peak_source": "VmHWM+sampling" if hwm_reset else "sampling every 10 ms",
    }


def run_case(
    start: Callable[[str], Registry], name: str, skopeo: Skopeo, warmup: Layout, layouts: list[Layout]
) -> dict:
    """One fresh server: warm it up, then push every layout's first tag at once."""
    reg = start(name)
    try:
        skopeo.copy(warmup.ref(warmup.tags[0]), f"docker://{reg.host}/bench/warmup:1")
        pairs = [
            (layout.ref(layout.tags[0]), f"docker://{reg.host}/bench/mem-{i}:1")
            for i, layout in enumerate(layouts)
        ]
        result = measure(reg, skopeo, pairs)
        result["streams"] = len(layouts)
        result["layer_bytes"] = [layout.bytes for layout in layouts]
        return result
    finally:
        reg.process.stop()
