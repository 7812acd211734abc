"""The packages of the scanning suite's fabricated images (tests/scanning/images.py, owned
by the scanner's part) as inventories, and the findings the shipped OSV data set
(skyport/vulnerabilities/sample_osv) must give for them: exactly these, no more.

The package lists are copies of images.py's expected constants, so that this suite runs
on its own; test_shipped_data.py checks they still equal images.py's when that is present.
"""

from __future__ import annotations

from skyport.scanning.model import Distro, Inventory, Package

DEBIAN_12 = Distro("debian", "12", "Debian GNU/Linux 12 (bookworm)")
ALPINE_319 = Distro("alpine", "3.19.1", "Alpine Linux v3.19")
ROCKY_9 = Distro("rocky", "9.3", "Rocky Linux 9.3 (Blue Onyx)")
SITE = "usr/lib/python3/dist-packages"
NODE_MODULES = "app/node_modules"
GO_APP = "usr/local/bin/app"

# (name, version, purl, location)
PACKAGES = {
    "debian-python": (
        DEBIAN_12,
        [
            (
                "openssl",
                "3.0.11-1~deb12u1",
                "pkg:deb/debian/openssl@3.0.11-1~deb12u1?arch=amd64&distro=debian-12",
            ),
            (
                "zlib1g",
                "1:1.2.13.dfsg-1",
                "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib",
            ),
            (
                "libc6",
                "2.36-9+deb12u3",
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=glibc",
            ),
            ("requests", "2.25.0", "pkg:pypi/requests@2.25.0"),
            ("Jinja2", "2.10", "pkg:pypi/jinja2@2.10"),
            ("PyYAML", "5.3.1", "pkg:pypi/pyyaml@5.3.1"),
        ],
    ),
    "alpine-node": (
        ALPINE_319,
        [
            ("busybox", "1.36.1-r15", "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1"),
            (
                "musl",
                "1.2.4_git20230717-r4",
                "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1",
            ),
            (
                "libcrypto3",
                "3.1.4-r2",
                "pkg:apk/alpine/libcrypto3@3.1.4-r2?arch=x86_64&distro=alpine-3.19.1&upstream=openssl",
            ),
            (
                "libssl3",
                "3.1.4-r2",
                "pkg:apk/alpine/libssl3@3.1.4-r2?arch=x86_64&distro=alpine-3.19.1&upstream=openssl",
            ),
            ("lodash", "4.17.15", "pkg:npm/lodash@4.17.15"),
            ("minimist", "1.2.8", "pkg:npm/minimist@1.2.8"),
            ("@babel/traverse", "7.22.0", "pkg:npm/%40babel/traverse@7.22.0"),
        ],
    ),
    "distroless-java-go": (
        DEBIAN_12,
        [
            (
                "tzdata",
                "2024a-0+deb12u1",
                "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12",
            ),
            (
                "libssl3",
                "3.0.11-1~deb12u2",
                "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl",
            ),
            ("log4j-core", "2.14.1", "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"),
            ("app", "1.0.0", "pkg:maven/com.example/app@1.0.0"),
            ("jackson-databind", "2.9.8", "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.8"),
            ("stdlib", "v1.20.1", "pkg:golang/stdlib@v1.20.1"),
            ("github.com/gin-gonic/gin", "v1.7.0", "pkg:golang/github.com/gin-gonic/gin@v1.7.0"),
            ("golang.org/x/text", "v0.3.7", "pkg:golang/golang.org/x/text@v0.3.7"),
            ("golang.org/x/net", "v0.7.0", "pkg:golang/golang.org/x/net@v0.7.0"),
        ],
    ),
    "rocky-rpm": (
        ROCKY_9,
        [
            (
                "openssl-libs",
                "1:3.0.7-25.el9_3",
                "pkg:rpm/rocky/openssl-libs@3.0.7-25.el9_3?arch=x86_64&distro=rocky-9.3&epoch=1",
            ),
            ("bash", "5.1.8-6.el9_1", "pkg:rpm/rocky/bash@5.1.8-6.el9_1?arch=x86_64&distro=rocky-9.3"),
        ],
    ),
}


def inventory(image: str) -> Inventory:
    distro, packages = PACKAGES[image]
    return Inventory(
        distro,
        [Package(name, version, purl, f"where/{name}", "sha256:layer") for name, version, purl in packages],
    )


# image -> {(finding id, package name): (severity, fixed version, aliases)}
FINDINGS = {
    "debian-python": {
        # 3.0.11-1~deb12u1 < 3.0.11-1~deb12u2: "~" sorts before anything, even the end.
        ("DSA-5532-1", "openssl"): ("UNKNOWN", "3.0.11-1~deb12u2", ("CVE-2023-5363", "CVE-2023-5678")),
        ("DEBIAN-CVE-2024-0727", "openssl"): ("MEDIUM", "3.0.13-1~deb12u1", ()),
        # libc6's source package is glibc (the purl's upstream qualifier).
        ("DSA-5611-1", "libc6"): (
            "UNKNOWN",
            "2.36-9+deb12u4",
            ("CVE-2023-6246", "CVE-2023-6779", "CVE-2023-6780"),
        ),
        # zlib1g 1:1.2.13.dfsg-1: the epoch puts it above DEBIAN-CVE-2022-37434's fix: no finding.
        # GHSA-j8r2-6x86-q33q and PYSEC-2023-74 are one vulnerability (aliases): one finding.
        ("GHSA-j8r2-6x86-q33q", "requests"): ("MEDIUM", "2.31.0", ("CVE-2023-32681", "PYSEC-2023-74")),
        ("GHSA-462w-v97r-4m45", "Jinja2"): ("HIGH", "2.10.1", ("CVE-2019-10906", "PYSEC-2019-217")),
        ("GHSA-8q59-q68h-6hv4", "PyYAML"): ("CRITICAL", "5.4", ("CVE-2020-14343", "PYSEC-2021-142")),
    },
    "alpine-node": {
        ("ALPINE-CVE-2023-6129", "libcrypto3"): ("HIGH", "3.1.4-r3", ()),
        ("ALPINE-CVE-2023-6129", "libssl3"): ("HIGH", "3.1.4-r3", ()),
        ("ALPINE-CVE-2023-42363", "busybox"): ("MEDIUM", "1.36.1-r16", ()),
        ("GHSA-p6mc-m468-83gw", "lodash"): ("HIGH", "4.17.19", ("CVE-2020-8203",)),
        ("GHSA-35jh-r3h4-6jhm", "lodash"): ("HIGH", "4.17.21", ("CVE-2021-23337",)),
        # CVSS v4 (9.3, CRITICAL) is preferred over the record's v3 vector (8.6, HIGH).
        ("GHSA-67hx-6x53-jw92", "@babel/traverse"): ("CRITICAL", "7.23.2", ("CVE-2023-45133",)),
        # minimist 1.2.8 is above GHSA-xvch-5gv4-984h's fix (1.2.6); musl's version is
        # not one univers reads (see SKIPPED).
    },
    "distroless-java-go": {
        ("DEBIAN-CVE-2024-0727", "libssl3"): ("MEDIUM", "3.0.13-1~deb12u1", ()),
        ("GHSA-jfh8-c2jp-5v3q", "log4j-core"): ("CRITICAL", "2.15.0", ("CVE-2021-44228",)),
        ("GHSA-7rjr-3q55-vv33", "log4j-core"): ("CRITICAL", "2.16.0", ("CVE-2021-45046",)),
        # Enumerated versions only: no fixed version known.
        ("GHSA-5ww9-j83m-q7qx", "jackson-databind"): ("HIGH", "", ("CVE-2019-12086",)),
        ("GO-2023-1621", "stdlib"): ("UNKNOWN", "1.20.2", ("CVE-2023-24532",)),
        ("GO-2023-1737", "github.com/gin-gonic/gin"): (
            "UNKNOWN",
            "1.9.1",
            ("CVE-2023-29401", "GHSA-2c4m-59x9-fr2g"),
        ),
        ("GO-2022-1059", "golang.org/x/text"): (
            "UNKNOWN",
            "0.3.8",
            ("CVE-2022-32149", "GHSA-69ch-w2m2-3vjp"),
        ),
        # DSA-5532-1 is fixed in libssl3's 3.0.11-1~deb12u2; GO-2023-1571 in x/net 0.7.0
        # and stdlib 1.20.1: equal to the installed versions, so no findings.
    },
    "rocky-rpm": {},
}

# image -> the reasons in the report's skipped (the matcher's; the scanner's are its own).
SKIPPED = {
    "debian-python": [],
    "alpine-node": [
        # univers reads no Alpine "_git" version: no guess, a named gap.
        "musl 1.2.4_git20230717-r4: not a valid Alpine version,"
        " so 1 record (ALPINE-CVE-2025-26519) not compared"
    ],
    "distroless-java-go": [],
    "rocky-rpm": ["2 packages (rpm packages of rocky 9.3): no OSV ecosystem for them, not matched"],
}
