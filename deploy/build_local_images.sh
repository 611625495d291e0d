#!/usr/bin/env bash
# Local stand-ins for the public images docker-compose.yml starts from, for a machine that
# reaches Debian's package archive and PyPI (or a local mirror of it) but no image registry:
#
#   PYTHON_IMAGE    python:3.11-slim's part the Dockerfile uses: python3 with venv (bookworm's 3.11)
#   POSTGRES_IMAGE  postgres:16's interface (POSTGRES_USER/_PASSWORD/_DB, PGDATA, pg_isready),
#                   with bookworm's PostgreSQL 15 and deploy/postgres-entrypoint.sh
#
# Both are Debian root file systems made by debootstrap and `docker import`ed: no image is pulled.
# It also fills deploy/wheels with every wheel the package needs, made by this machine's pip (its
# mirror, its certificates), so that the image build installs them without reaching an index
# (--no-index); the folder is kept between builds and refilled only when pyproject.toml's
# [project] table (the dependencies) changes.
# An image that already exists is kept. Prints the variables docker compose takes, for `eval`:
#
#   eval "$(deploy/build_local_images.sh)" && docker-compose --profile cpu build
#
# Needs root (debootstrap, chroot) and a running engine (DOCKER_HOST picks it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python_image=${PYTHON_IMAGE:-hybridnas-local/python:3.11-bookworm}
postgres_image=${POSTGRES_IMAGE:-hybridnas-local/postgres:15-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-python3}
path_env='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

log() { echo "build_local_images: $*" >&2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# A chroot that installs Debian packages without starting their services.
chroot_install() {
    local rootfs=$1
    shift
    printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
    chmod +x "$rootfs/usr/sbin/policy-rc.d"
    chroot "$rootfs" apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get install -y -q --no-install-recommends "$@" >&2
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs/usr/sbin/policy-rc.d" "$rootfs"/var/lib/apt/lists/*
}

base_rootfs() {
    if [ ! -d "$work/base" ]; then
        command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >&2
        log "debootstrap bookworm (minbase) from $mirror"
        debootstrap --variant=minbase bookworm "$work/base" "$mirror" >&2
    fi
    cp -a "$work/base" "$work/$1"
}

if ! have_image "$python_image"; then
    base_rootfs python
    chroot_install "$work/python" python3 python3-venv
    log "importing $python_image"
    tar -C "$work/python" -c . | docker import --change "$path_env" --change 'CMD ["python3"]' - "$python_image" >&2
fi

if ! have_image "$postgres_image"; then
    base_rootfs postgres
    mkdir -p "$work/postgres/etc/postgresql-common/createcluster.d"
    echo "create_main_cluster = false" > "$work/postgres/etc/postgresql-common/createcluster.d/no-main.conf"
    chroot_install "$work/postgres" postgresql-15
    install -m 0755 "$here/postgres-entrypoint.sh" "$work/postgres/usr/local/bin/docker-entrypoint.sh"
    log "importing $postgres_image"
    tar -C "$work/postgres" -c . | docker import \
        --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PGDATA=/var/lib/postgresql/data' \
        --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
        --change 'EXPOSE 5432' - "$postgres_image" >&2
fi

wheels="$here/wheels"
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { log "$python is not Python 3.11, the images' Python: set PYTHON"; exit 1; }
stamp=$("$python" -c 'import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], "rb"))["project"]))' \
    "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$wheels/.pyproject.sha256" 2>/dev/null)" != "$stamp" ]; then
    log "filling $wheels with $python's pip"
    find "$wheels" -name '*.whl' -delete
    "$python" -m pip wheel -q --wheel-dir "$wheels" "$root" "setuptools>=69" >&2
    rm -f "$wheels"/hybridnas-*.whl
    echo "$stamp" > "$wheels/.pyproject.sha256"
fi

echo "export PYTHON_IMAGE=$python_image POSTGRES_IMAGE=$postgres_image PIP_INSTALL_OPTIONS=--no-index"
