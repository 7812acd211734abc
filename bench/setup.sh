#!/usr/bin/env bash
# What `make bench` needs beyond the project venv, from Debian packages:
#   skopeo (the client, also installed by scripts/install-system-deps.sh) and
#   docker-registry (CNCF Distribution 2.8, the reference registry).
# Idempotent and quick when both are present. As root with apt-get, installs what
# is missing; otherwise says what to install and fails: the bench cannot compare
# against a reference it does not have.
set -euo pipefail

wanted=(skopeo:skopeo docker-registry:docker-registry)
missing=()
for pair in "${wanted[@]}"; do
    pkg=${pair%%:*} cmd=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    echo "bench deps: skopeo and docker-registry (Distribution) are installed"
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "bench deps: missing ${missing[*]}; as root on Debian: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "bench deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The package may start a registry on :5000 with its own config; the bench runs its own.
if [[ " ${missing[*]} " == *" docker-registry "* ]]; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
        systemctl stop docker-registry || true
    elif [[ -x /etc/init.d/docker-registry ]]; then
        /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
    fi
fi
