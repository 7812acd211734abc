#!/usr/bin/env bash
# Container clients for the end-to-end tests (tests/e2e), from Debian packages:
#   skopeo, podman, docker.io (dockerd and docker) and uidmap; and docker-registry
#   (CNCF Distribution), the reference of the bench, whose tiny run is a test
#   (tests/bench).
# Idempotent and quick when everything is present. As root with apt-get, installs
# what is missing (running `apt-get update` only then). Otherwise it prints what is
# missing and exits 0: the e2e tests then skip, each saying why.
set -euo pipefail

# package:command that proves it is installed
wanted=(skopeo:skopeo podman:podman docker.io:dockerd docker.io:docker uidmap:newuidmap
        docker-registry:docker-registry)
# ip (iproute2): the bridge that tests/e2e/test_sam_local.py gives its dockerd.
wanted+=(iproute2:ip)

missing=()
for pair in "${wanted[@]}"; do
    pkg=${pair%%:*} cmd=${pair#*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && [[ " ${missing[*]-} " != *" $pkg "* ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "system deps: skopeo, podman, dockerd, docker, uidmap and docker-registry are installed"
    exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system deps: missing ${missing[*]}; the e2e tests that need them will skip." >&2
    echo "  install as root on Debian: apt-get install -y ${missing[*]}" >&2
    exit 0
fi

echo "system deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    echo "system deps: apt-get could not install ${missing[*]}; the e2e tests that need them will skip." >&2
fi
# docker-registry's package may start a registry of its own on :5000 (`make run`'s
# port); the bench starts its own instances, so stop the one just installed.
if [[ " ${missing[*]} " == *" docker-registry "* ]]; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
        systemctl stop docker-registry || true
    elif [[ -x /etc/init.d/docker-registry ]]; then
        /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
    fi
fi
exit 0
