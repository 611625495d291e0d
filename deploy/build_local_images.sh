#!/usr/bin/env bash
# Every image docker-compose.yml runs, for a machine that reaches Debian's package archive and
# PyPI (or a local mirror of it) but no image registry:
#
#   PYTHON_IMAGE    python:3.11-slim's part the Dockerfile uses: python3 with venv (bookworm's 3.11)
#   POSTGRES_IMAGE  postgres:16's interface (POSTGRES_USER/_PASSWORD/_DB, PGDATA, pg_isready),
#                   with bookworm's PostgreSQL 15 and deploy/postgres-entrypoint.sh
#   HYBRIDNAS_IMAGE the Dockerfile on PYTHON_IMAGE, built by `docker-compose build launch`
#
# The two bases are Debian root file systems made by debootstrap and `docker import`ed: no image
# is pulled; one that already exists is kept. deploy/wheels gets every wheel the package needs,
# made by this machine's pip (its mirror, its certificates); the folder is kept between builds and
# refilled only when pyproject.toml's [project] table (the dependencies) changes. The project
# image's build takes them from a server on 127.0.0.1 that lives as long as the build (the build
# runs on the host's network; --no-index keeps it off PyPI), so the wheels, several GB with
# torch's CUDA libraries, are neither in the build context nor in any layer.
# Prints the variables docker compose takes, for `eval`:
#
#   eval "$(deploy/build_local_images.sh)" && docker-compose --profile cpu up -d
#
# Needs root (debootstrap, chroot), a running engine (DOCKER_HOST picks it) and docker-compose.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python_image=${PYTHON_IMAGE:-hybridnas-local/python:3.11-bookworm}
postgres_image=${POSTGRES_IMAGE:-hybridnas-local/postgres:15-bookworm}
hybridnas_image=${HYBRIDNAS_IMAGE:-hybridnas:latest}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-python3}
path_env='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

log() { echo "build_local_images: $*" >&2; }

work=$(mktemp -d)
server=""
trap '[ -z "$server" ] || kill "$server"; rm -rf "$work"' EXIT

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

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" -m http.server --bind 127.0.0.1 --directory "$wheels" "$port" >"$work/wheel-server.log" 2>&1 &
server=$!
"$python" - "$port" <<'WAIT'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("build_local_images: the wheel server on 127.0.0.1 did not answer")
WAIT
log "building $hybridnas_image (wheels from 127.0.0.1:$port)"
compose=(docker-compose)
command -v docker-compose >/dev/null || compose=(docker compose)
PYTHON_IMAGE=$python_image HYBRIDNAS_IMAGE=$hybridnas_image BUILD_NETWORK=host \
    PIP_INSTALL_OPTIONS="--no-index --find-links http://127.0.0.1:$port/" \
    RAY_AUTH_TOKEN=${RAY_AUTH_TOKEN:-build} HYBRIDNAS_DASHBOARD_TOKEN=${HYBRIDNAS_DASHBOARD_TOKEN:-build} \
    "${compose[@]}" -f "$root/docker-compose.yml" build launch >&2

echo "export PYTHON_IMAGE=$python_image POSTGRES_IMAGE=$postgres_image HYBRIDNAS_IMAGE=$hybridnas_image"
