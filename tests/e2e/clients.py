"""Running container clients with bounded time and readable failures."""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import time
from dataclasses import dataclass, field

# Loopback must never go through a proxy, whatever the environment says.
NO_PROXY = "127.0.0.1,localhost,::1"

DEFAULT_TIMEOUT = 120.0
TRANSFER_TIMEOUT = 300.0  # pushes, pulls and copies of tens of MiB


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = env["no_proxy"] = ",".join(x for x in (NO_PROXY, env.get("NO_PROXY", "")) if x)
    env.update(extra)
    return env


def unique(name: str) -> str:
    """A repository name no other test (or earlier run on a shared registry) uses."""
    return f"{name}-{secrets.token_hex(3)}"


def _tail(text: str, lines: int = 60) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure or timeout raise AssertionError showing its output."""
    __tracebackhide__ = True
    shown = shlex.join(argv)
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise AssertionError(
            f"`{shown}` timed out after {timeout:.0f}s\n"
            f"--- stderr ---\n{_tail(err or '')}\n--- stdout ---\n{_tail(out or '')}"
        ) from None
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{shown}` exited with {result.returncode} after "
            f"{time.monotonic() - started:.1f}s\n"
            f"--- stderr ---\n{_tail(result.stderr)}\n--- stdout ---\n{_tail(result.stdout)}"
        )
    return result


@dataclass
class Client:
    """A command-line client with its fixed leading arguments and environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=base_env)

    def __call__(
        self, *args: str, timeout: float = DEFAULT_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        __tracebackhide__ = True
        return run([*self.argv, *args], env=self.env, timeout=timeout, check=check)

    def fails(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a command that must fail; return its result for the caller to inspect."""
        __tracebackhide__ = True
        result = self(*args, timeout=timeout, check=False)
        assert result.returncode != 0, (
            f"`{shlex.join([*self.argv, *args])}` succeeded but should have failed\n"
            f"--- stdout ---\n{_tail(result.stdout)}"
        )
        return result
