"""skopeo, run the same way against every registry, with bounded time."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .services import child_env


class ClientError(RuntimeError):
    pass


@dataclass
class Skopeo:
    """skopeo with a private policy, no credentials, and no blob-info cache.

    skopeo remembers which blobs it has seen where (its "blob info cache") and
    then skips or mounts them on the next push, which would make every run after
    the first one measure nothing. Pointing XDG_DATA_HOME at a directory whose
    ``containers`` entry is a file makes the cache memory-only: each command starts
    from scratch, as a fresh CI machine does. ``_CONTAINERS_ROOTLESS_UID`` makes
    skopeo look there even when run as root (root's cache lives in /var/lib).
    """

    home: Path
    timeout: float

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.policy = self.home / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        (self.home / "auth.json").write_text("{}")
        data = self.home / "data"
        data.mkdir(exist_ok=True)
        (data / "containers").write_text("not a directory: keeps the blob info cache in memory")
        (self.home / "tmp").mkdir(exist_ok=True)
        self.env = child_env(
            REGISTRY_AUTH_FILE=str(self.home / "auth.json"),
            XDG_DATA_HOME=str(data),
            _CONTAINERS_ROOTLESS_UID="65534",
            TMPDIR=str(self.home / "tmp"),
        )

    def argv(self, src: str, dst: str) -> list[str]:
        argv = ["skopeo", "--policy", str(self.policy), "copy", "--quiet"]
        if src.startswith("docker://"):
            argv.append("--src-tls-verify=false")
        if dst.startswith("docker://"):
            argv.append("--dest-tls-verify=false")
        return [*argv, src, dst]

    def start(self, src: str, dst: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(src, dst),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, proc: subprocess.Popen, deadline: float) -> None:
        try:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise ClientError(f"`{shlex.join(proc.args)}` timed out\n{err[-3000:]}") from None
        if proc.returncode != 0:
            shown = shlex.join(proc.args)
            raise ClientError(f"`{shown}` exited with {proc.returncode}\n{err[-3000:]}{out[-500:]}")

    def copy(self, src: str, dst: str) -> float:
        """One copy; returns its wall time in seconds."""
        started = time.perf_counter()
        self.finish(self.start(src, dst), time.monotonic() + self.timeout)
        return time.perf_counter() - started

    def copy_parallel(self, pairs: list[tuple[str, str]]) -> float:
        """Several copies at once; returns the wall time until the last one ends."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        procs = [self.start(src, dst) for src, dst in pairs]
        errors = []
        for proc in procs:
            try:
                self.finish(proc, deadline)
            except ClientError as exc:
                errors.append(str(exc))
        if errors:
            raise ClientError("\n".join(errors))
        return time.perf_counter() - started

    def scratch(self) -> Path:
        """A fresh directory to pull into (``dir:`` transport); remove with ``drop``."""
        return Path(tempfile.mkdtemp(prefix="pull-", dir=self.home / "tmp"))

    @staticmethod
    def drop(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def version() -> str:
        try:
            out = subprocess.run(["skopeo", "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.strip().split()[-1] if out.strip() else "unknown"
