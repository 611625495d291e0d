#!/bin/sh
# Entry point of the local PostgreSQL image (deploy/build_local_images.sh), the part of the
# official postgres image's that docker-compose.yml relies on: POSTGRES_USER, POSTGRES_PASSWORD and
# POSTGRES_DB create the cluster in $PGDATA on the first start (the password through a file, never
# on a command line), and the server then listens on every interface with password authentication.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        as_postgres pg_ctl --wait --options="-c listen_addresses=''" start
        echo 'CREATE DATABASE :"db"' | as_postgres psql --no-psqlrc --set=ON_ERROR_STOP=1 \
            --username="$POSTGRES_USER" --dbname=postgres --set=db="$POSTGRES_DB"
        as_postgres pg_ctl --wait --mode=fast stop
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -c listen_addresses='*' "$@"
