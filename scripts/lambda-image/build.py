"""A stand-in for Lambda's Python base image, assembled offline from this host.

`sam local invoke` runs a function in the image public.ecr.aws/lambda/python:3.12-<arch>
(plus SAM's own layer on top: the Runtime Interface Emulator it bundles, and the
function's layers). Where that image cannot be pulled, this builds one with the same
name and the same layout from files already on the machine:

    /var/lang             the runtime's Python (a python3.12 of this host, e.g. pyenv's)
    /var/runtime          bootstrap (what the emulator starts), bootstrap.py and the
                          runtime interface client awslambdaric (from PyPI)
    /var/task, /opt       where SAM mounts the function and adds its layers
    /usr/lib/...          the host's shared libraries those programs load (ldd), and
                          /bin/sh, mv, chmod, cp, rm for the RUN step of SAM's Dockerfile

with Lambda's environment (LAMBDA_TASK_ROOT, LAMBDA_RUNTIME_DIR, PATH, LD_LIBRARY_PATH).
It is not Amazon Linux: it runs the function's code with the right Python, sys.path,
runtime client and emulator, which is what a local invoke needs.

    python3 scripts/lambda-image/build.py --python ~/.pyenv/versions/3.12.1/bin/python3.12
    DOCKER_HOST=... python3 scripts/lambda-image/build.py --python ... --import

prints the root file system tarball (cached under .aws-sam/lambda-image/, rebuilt when
this script, bootstrap.py or the Python change) and with --import loads it into the
Docker daemon as public.ecr.aws/lambda/python:<X.Y>-<arch>; then
`sam local invoke --skip-pull-image` builds on it without going to the network.
The function must be built for the host's architecture (tests/e2e/test_sam_local.py).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_CACHE = ROOT / ".aws-sam" / "lambda-image"
AWSLAMBDARIC = "awslambdaric==4.2.2"
REPOSITORY = "public.ecr.aws/lambda/python"
# Host tools: /bin/sh runs bootstrap and SAM's `RUN mv ... && chmod +x ...`; cp and rm
# its step for a second layer.
TOOLS = ("sh", "mv", "chmod", "cp", "rm", "mkdir", "ls", "cat", "env")
# The system libraries that manylinux wheels may link against without bundling them
# (PEP 599's list, less X11/GL/glib), plus zlib and glibc's NSS modules: Lambda's
# Amazon Linux has them all, so a function's native dependencies expect them.
SYSTEM_LIBRARIES = ("libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0",
                    "libutil.so.1", "libresolv.so.2", "libnsl.so.1", "libgcc_s.so.1",
                    "libstdc++.so.6", "libz.so.1", "libnss_files.so.2", "libnss_dns.so.2")
# The parts of a Python installation a function never imports.
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages"}
BOOTSTRAP = """#!/bin/sh
# Started by aws-lambda-rie (the Runtime Interface Emulator) for a python{version} function.
export AWS_EXECUTION_ENV=AWS_Lambda_python{version}
if [ -n "$AWS_LAMBDA_EXEC_WRAPPER" ]; then
  exec "$AWS_LAMBDA_EXEC_WRAPPER" /var/lang/bin/python{version} /var/runtime/bootstrap.py
fi
exec /var/lang/bin/python{version} /var/runtime/bootstrap.py
"""
# Lambda's runtime environment (LANG: C.UTF-8 is built into glibc; no locale files here).
ENV = {
    "LANG": "C.UTF-8",
    "TZ": ":/etc/localtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:"
                       "/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}
ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\n",
    "etc/group": "root:x:0:\nsbx_user1051:x:990:\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost\n",
}


def lambda_arch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[machine]


def python_info(python: str) -> dict:
    code = ("import json, sys, sysconfig; print(json.dumps({'prefix': sys.base_prefix, "
            "'version': '%d.%d' % sys.version_info[:2], 'full': sys.version, "
            "'executable': sys.executable}))")
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True,
                                     check=True).stdout)


def image_tag(version: str, arch: str) -> str:
    """The name SAM looks for (samcli.local.docker.lambda_image.Runtime.get_image_name_tag)."""
    return f"{REPOSITORY}:{version}-{arch}"


def cache_key(info: dict, arch: str) -> str:
    h = hashlib.sha256()
    for path in (Path(__file__), HERE / "bootstrap.py"):
        h.update(path.read_bytes())
    executable = Path(info["executable"]).resolve()
    h.update(json.dumps([info, arch, AWSLAMBDARIC, TOOLS, executable.stat().st_mtime_ns]).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ collecting files


class Rootfs:
    """Members of the tarball by path, owned by root; directories made as needed."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[tarfile.TarInfo, Path | bytes | None]] = {}

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.uname, info.gname = kind, mode, 0, 0, "root", "root"
        info.mtime = 0
        return info

    def dir(self, name: str, mode: int = 0o755) -> None:
        name = name.strip("/")
        if not name or name in self.members:
            return
        self.dir(os.path.dirname(name))
        self.members[name] = (self._info(name, tarfile.DIRTYPE, mode), None)

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.members[name] = (info, None)

    def file(self, name: str, source: Path | bytes, mode: int | None = None) -> None:
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        if isinstance(source, bytes):
            info = self._info(name, tarfile.REGTYPE, mode or 0o644)
            info.size = len(source)
        else:
            st = source.stat()
            info = self._info(name, tarfile.REGTYPE, mode or (st.st_mode & 0o7777))
            info.size, info.mtime = st.st_size, int(st.st_mtime)  # keeps .pyc files valid
        self.members[name] = (info, source)

    def host_path(self, path: str) -> None:
        """Add a host file under the same path, with every symbolic link on the way
        (Debian's /lib -> usr/lib, libz.so.1 -> libz.so.1.2.13, ...)."""
        current = "/"
        parts = Path(path).parts[1:]
        for i, part in enumerate(parts):
            candidate = os.path.join(current, part)
            if os.path.islink(candidate):
                target = os.readlink(candidate)
                self.symlink(candidate, target)
                resolved = os.path.normpath(os.path.join(current, target))
                return self.host_path(os.path.join(resolved, *parts[i + 1:]))
            current = candidate
        if os.path.isfile(current):
            self.file(current, Path(current))

    def tree(self, source: Path, dest: str, skip: Callable[[Path], bool] = lambda rel: False) -> None:
        for dirpath, dirnames, filenames in os.walk(source):
            rel_dir = Path(dirpath).relative_to(source)
            kept = [d for d in dirnames if not skip(rel_dir / d)]
            dirnames[:] = sorted(d for d in kept if not Path(dirpath, d).is_symlink())
            self.dir(f"{dest}/{rel_dir}" if str(rel_dir) != "." else dest)
            for name in sorted([*filenames, *(d for d in kept if d not in dirnames)]):
                rel = rel_dir / name
                if skip(rel):
                    continue
                path = Path(dirpath, name)
                if path.is_symlink():
                    self.symlink(f"{dest}/{rel}", os.readlink(path))
                else:
                    self.file(f"{dest}/{rel}", path)

    def write(self, out: Path) -> None:
        with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
            for name in sorted(self.members):
                info, source = self.members[name]
                if info.isreg():
                    data = source if isinstance(source, bytes) else source.read_bytes()
                    tar.addfile(info, io.BytesIO(data))
                else:
                    tar.addfile(info)


_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def shared_libraries(binaries: Iterable[Path]) -> set[str]:
    """Every library the dynamic loader would load for these ELF files (and itself).
    One it would not find is left out: the module needing it is as broken on the host."""
    found: set[str] = set()
    for binary in binaries:
        result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        if result.returncode != 0:  # not dynamic (a static binary, a script)
            continue
        for line in result.stdout.splitlines():
            match = _LDD_LINE.search(line)
            if match:
                found.add(match.group(1))
    return found


def system_libraries(arch: str) -> list[str]:
    """Where SYSTEM_LIBRARIES are on this host, from the loader's cache (`ldconfig -p`)."""
    marker = {"x86_64": "x86-64", "arm64": "AArch64"}[arch]
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in listing.splitlines():
        match = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if match and match.group(1) in SYSTEM_LIBRARIES and marker in match.group(2):
            found.setdefault(match.group(1), match.group(3))
    return sorted(found.values())


def build_rootfs(python: str, cache_dir: Path = DEFAULT_CACHE) -> tuple[Path, str]:
    """The root file system tarball for `python`'s version on this host's architecture
    (from the cache when it is current), and the image name it stands in for."""
    info = python_info(python)
    version, prefix = info["version"], Path(info["prefix"])
    arch = lambda_arch()
    tag = image_tag(version, arch)
    key = cache_key(info, arch)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"python{version}-{arch}-{key}.tar"
    if out.exists():
        return out, tag

    with tempfile.TemporaryDirectory(prefix="lambda-image-", dir=cache_dir) as tmp:
        runtime = Path(tmp, "runtime")
        machine = {"x86_64": "x86_64", "arm64": "aarch64"}[arch]
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--root-user-action=ignore", "--no-compile", "--target", str(runtime), "--only-binary=:all:",
             "--platform", f"manylinux2014_{machine}", "--implementation", "cp",
             "--python-version", version, AWSLAMBDARIC],
            check=True,
        )
        shutil.copy(HERE / "bootstrap.py", runtime / "bootstrap.py")
        subprocess.run([python, "-m", "compileall", "-q", str(runtime)], check=True,
                       stdout=subprocess.DEVNULL)

        fs = Rootfs()
        for name in ("bin", "lib", "lib64", "sbin"):  # Debian's merged /usr
            if os.path.islink(f"/{name}"):
                fs.symlink(name, os.readlink(f"/{name}"))
        for name in ("var/task", "opt", "root", "etc", "dev", "proc", "sys", "var/rapid"):
            fs.dir(name)
        fs.dir("tmp", 0o1777)
        for name, text in ETC.items():
            fs.file(name, text.encode())
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        if os.path.isfile(bundle):
            fs.host_path(bundle)

        stdlib = Path("lib") / f"python{version}"

        def skip_python(rel: Path) -> bool:
            parts = rel.parts
            if parts[0] in ("include", "share") or (parts[0] == "lib" and len(parts) > 1
                                                    and parts[1] == "pkgconfig"):
                return True
            name = parts[-1]
            if parts[0] == "bin" and len(parts) > 1:  # python, python3, python3.12 only
                return not name.startswith("python") or name.endswith(("-config", ".py"))
            if rel.is_relative_to(stdlib) and len(parts) > 2 and (
                    parts[2] in STDLIB_SKIP or parts[2].startswith("config-")):
                return True
            return name.startswith("_tkinter.") or (".opt-" in name and name.endswith(".pyc"))

        fs.tree(prefix, "var/lang", skip_python)
        fs.dir(f"var/lang/{stdlib}/site-packages")
        fs.tree(runtime, "var/runtime")
        fs.file("var/runtime/bootstrap", BOOTSTRAP.format(version=version).encode(), 0o755)

        tools = [shutil.which(t, path="/usr/bin:/bin") for t in TOOLS]
        missing = [t for t, p in zip(TOOLS, tools, strict=True) if p is None]
        if missing:
            raise SystemExit(f"not on this host: {', '.join(missing)}")
        for tool in tools:
            fs.host_path(tool)
        system = system_libraries(arch)
        shipped = [src for _, src in fs.members.values() if isinstance(src, Path) and ".so" in src.name]
        elves = [Path(info["executable"]).resolve(), *(Path(t).resolve() for t in tools), *shipped,
                 *map(Path, system)]
        for library in sorted(shared_libraries(elves) | set(system)):
            if not library.startswith(str(prefix)):
                fs.host_path(library)

        partial = Path(tmp, out.name)
        fs.write(partial)
        partial.replace(out)  # atomic: a concurrent run finds a whole tarball or none
        for old in cache_dir.glob(f"python{version}-{arch}-*.tar"):
            if old != out:
                old.unlink(missing_ok=True)
    return out, tag


def import_args(tarball: Path, tag: str) -> list[str]:
    """`docker import` arguments that give the tarball the image configuration of Lambda's."""
    changes = [f"ENV {name}={value}" for name, value in ENV.items()]
    # No entrypoint: SAM gives the container its own (the emulator, which starts bootstrap).
    changes.append("WORKDIR /var/task")
    argv = ["import"]
    for change in changes:
        argv += ["--change", change]
    return [*argv, str(tarball), tag]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="python3.12",
                        help="the runtime's Python to install as /var/lang (default: python3.12)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--import", dest="do_import", action="store_true",
                        help="docker import it (the daemon of DOCKER_HOST) under Lambda's image name")
    args = parser.parse_args(argv)
    tarball, tag = build_rootfs(args.python, args.cache_dir)
    print(tarball)
    if args.do_import:
        subprocess.run(["docker", *import_args(tarball, tag)], check=True, stdout=subprocess.DEVNULL)
        print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
