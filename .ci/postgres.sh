#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the `postgres` feature's tests and prints
#   export TOWER_PATTERNS_PG_URL=postgresql://...
# as the LAST line of stdout (everything else goes to stderr), so CI can do
#   eval "$(bash .ci/postgres.sh | tail -1)"
#
# Idempotent: installs PostgreSQL from Debian's packages only if it is missing,
# creates the cluster only once, reuses it if it is already running.
# Listens on 127.0.0.1 only. Settings (all optional):
#   TOWER_PATTERNS_PG_DIR   cluster directory  (default ${TMPDIR:-/tmp}/tower-patterns-pg)
#   TOWER_PATTERNS_PG_PORT  first port to try  (default 54329)
set -euo pipefail

DIR="${TOWER_PATTERNS_PG_DIR:-${TMPDIR:-/tmp}/tower-patterns-pg}"
PORT="${TOWER_PATTERNS_PG_PORT:-54329}"
DB=tower_patterns
ROLE=tower_patterns
PASSWORD=tower_patterns

log() { printf 'postgres.sh: %s\n' "$*" >&2; }

find_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
        echo "$dir"
    elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}

BIN=$(find_bin)
if [ -z "$BIN" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "PostgreSQL is not installed and this is not root: install the 'postgresql' package first"
        exit 1
    fi
    log "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
    BIN=$(find_bin)
    [ -n "$BIN" ] || { log "postgresql installed but initdb/pg_ctl not found"; exit 1; }
fi
log "using $BIN"

# PostgreSQL refuses to run as root: as root, run its tools as `postgres`.
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    OWNER=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    OWNER=$(id -un)
    as_owner() { "$@"; }
fi

mkdir -p "$DIR"
chown "$OWNER" "$DIR"
chmod 700 "$DIR"
DATA="$DIR/data"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ ! -s "$DATA/PG_VERSION" ]; then
    log "creating a cluster in $DATA"
    rm -rf "$DATA"
    PWFILE="$DIR/superuser.pw"
    echo "$PASSWORD" >"$PWFILE"
    chown "$OWNER" "$PWFILE"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$PWFILE" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >&2
    rm -f "$PWFILE"
fi

if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    PORT=$(sed -n 4p "$DATA/postmaster.pid")
    log "already running on 127.0.0.1:$PORT"
else
    while port_in_use "$PORT"; do
        PORT=$((PORT + 1))
    done
    log "starting on 127.0.0.1:$PORT"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=200 -c fsync=off" >&2 \
        || { log "start failed; server log:"; tail -n 30 "$DIR/server.log" >&2; exit 1; }
fi

psql_admin() {
    as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"
}
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    log "creating role $ROLE"
    psql_admin -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    log "creating database $DB"
    psql_admin -c "CREATE DATABASE $DB OWNER $ROLE" >&2
fi

echo "export TOWER_PATTERNS_PG_URL=postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
