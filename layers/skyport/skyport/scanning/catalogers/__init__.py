"""What identifies software in an image, one module per source (issue 14).

Each cataloger says which paths it reads (``matches``) and turns one file's bytes into a
:class:`Found`: packages not yet tied to the image's distro (an OS package's purl names the
distro, which may come from another file or a later layer), a distro, or gaps. The scanner
(``image.py``) keeps one ``Found`` per path, so whiteouts and later layers apply to it.

Go binaries are the exception: any executable may carry build info, so ``golang`` reads a
file as a stream instead of whole (see ``golang.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from skyport.scanning.model import Distro


@dataclass(frozen=True)
class Candidate:
    """A package as a file declares it; ``image.py`` makes its purl once the distro is known.

    ``os_package``: the purl's namespace is the distro's id (``default_namespace`` without one)
    and it gets the ``distro=<id>-<version_id>`` qualifier."""

    purl_type: str
    namespace: str | None
    purl_name: str
    purl_version: str
    qualifiers: tuple[tuple[str, str], ...] = ()
    name: str = ""  # as the ecosystem writes it ("Jinja2", "@babel/traverse")
    version: str = ""  # as the ecosystem writes it (an rpm's "1:3.0.7-25.el9_3")
    location: str = ""  # "" for the file's own path; a jar nested in a jar says which
    os_package: bool = False
    licenses: tuple[str, ...] = ()  # as the package declares them (apk L:, npm license, ...)


@dataclass(frozen=True)
class Found:
    """What one file gave: packages, a distro (os-release), and paths not read, with why."""

    candidates: tuple[Candidate, ...] = ()
    distro: Distro | None = None
    gaps: tuple[tuple[str, str], ...] = field(default=())  # (path, reason)


NOTHING = Found()


@dataclass(frozen=True)
class Cataloger:
    name: str
    matches: Callable[[str], bool]
    read: Callable[[str, bytes, int], Found]  # (path, content, bytes a nested file may have)
    large: bool = False  # a jar: bounded by ScanLimits.max_jar_bytes, not max_file_bytes


@cache
def catalogers() -> tuple[Cataloger, ...]:
    # Imported here: each module imports this one for Candidate and Found.
    from skyport.scanning.catalogers import apk, dpkg, java, npm, os_release, python, rpm

    return (
        os_release.CATALOGER,
        dpkg.CATALOGER,
        apk.CATALOGER,
        rpm.CATALOGER,
        python.CATALOGER,
        npm.CATALOGER,
        java.CATALOGER,
    )


def cataloger_for(path: str) -> Cataloger | None:
    """The cataloger that reads ``path`` (normalised, relative to the image root), if any."""
    for cataloger in catalogers():
        if cataloger.matches(path):
            return cataloger
    return None


MAX_LICENSE = 200  # a declared license longer than this is a text, not a name


def licenses(*declared: object) -> tuple[str, ...]:
    """The declared license names that are short strings, sorted, once each."""
    names = {value.strip() for value in declared if isinstance(value, str)}
    return tuple(sorted(name for name in names if name and len(name) <= MAX_LICENSE and "\n" not in name))


def text(data: bytes) -> str:
    """Package databases are UTF-8 in practice; a stray byte must not lose the whole file."""
    return data.decode("utf-8", errors="replace")


def stanzas(content: str) -> list[list[str]]:
    """Paragraphs of lines separated by blank lines (dpkg status, apk installed)."""
    paragraphs: list[list[str]] = [[]]
    for line in content.splitlines():
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [paragraph for paragraph in paragraphs if paragraph]
