#!/usr/bin/env bash
# Container clients for the end-to-end tests (tests/e2e), from Debian packages:
#   skopeo, podman, docker.io (dockerd and docker) and uidmap; and docker-registry
#   (CNCF Distribution), the reference of the bench, whose tiny run is a test
#   (tests/bench).
# Idempotent and quick when everything is present. As root with apt-get, installs
# what is missing (running `apt-get update` only then), and exits non-zero, saying
# what, when an install fails or a command is still missing after it. Where it cannot
# install (not root, no apt-get) it prints what is missing and exits 0, so that the
# tests that need it skip, each saying why; under CI=true it exits 1 instead (those
# tests would fail: tests/machine.py).
set -euo pipefail

# package:command that proves it is installed
wanted=(skopeo:skopeo podman:podman docker.io:dockerd docker.io:docker uidmap:newuidmap
        docker-registry:docker-registry)
# ip (iproute2): the bridge that tests/e2e/test_sam_local.py gives its dockerd.
wanted+=(iproute2:ip)

# Sets `missing` to the packages whose command is not on PATH.
find_missing() {
    missing=()
    local pair pkg cmd
    for pair in "${wanted[@]}"; do
        pkg=${pair%%:*} cmd=${pair#*:}
        if ! command -v "$cmd" >/dev/null 2>&1 && [[ " ${missing[*]-} " != *" $pkg "* ]]; then
            missing+=("$pkg")
        fi
    done
}
find_missing

if ((${#missing[@]} == 0)); then
    echo "system deps: skopeo, podman, dockerd, docker, uidmap and docker-registry are installed"
    exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system deps: missing ${missing[*]}; the e2e tests that need them will skip." >&2
    echo "  install as root on Debian: apt-get install -y ${missing[*]}" >&2
    if [[ ${CI:-} == true ]]; then
        echo "system deps: CI=true and they cannot be installed here (needs root and apt-get)" >&2
        exit 1
    fi
    exit 0
fi

echo "system deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    echo "system deps: apt-get could not install ${missing[*]} (its output is above)" >&2
    exit 1
fi
installed=("${missing[@]}")
find_missing
if ((${#missing[@]} > 0)); then
    echo "system deps: ${missing[*]} installed but its command is still not on PATH" >&2
    exit 1
fi
# docker-registry's package may start a registry of its own on :5000 (`make run`'s
# port); the bench starts its own instances, so stop the one just installed.
if [[ " ${installed[*]} " == *" docker-registry "* ]]; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
        systemctl stop docker-registry || true
    elif [[ -x /etc/init.d/docker-registry ]]; then
        /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
    fi
fi
exit 0
