#!/usr/bin/env bash
# Starts a throwaway Redis for the `redis` feature's tests and benches and prints
#   export TOWER_PATTERNS_REDIS_URL=redis://127.0.0.1:PORT
# as the LAST line of stdout (everything else goes to stderr), so CI can do
#   eval "$(bash .ci/redis.sh | tail -1)"
#
# Idempotent: installs redis-server from Debian's packages only if it is
# missing, reuses a server this script started if it still answers. The
# server listens on 127.0.0.1 only, keeps nothing on disk (no RDB snapshots,
# no AOF) and runs daemonized. Settings (all optional):
#   TOWER_PATTERNS_REDIS_DIR   working directory (default ${TMPDIR:-/tmp}/tower-patterns-redis)
#   TOWER_PATTERNS_REDIS_PORT  first port to try (default 63799)
set -euo pipefail

DIR="${TOWER_PATTERNS_REDIS_DIR:-${TMPDIR:-/tmp}/tower-patterns-redis}"
PORT="${TOWER_PATTERNS_REDIS_PORT:-63799}"

log() { printf 'redis.sh: %s\n' "$*" >&2; }

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        log "redis-server is not installed and this is not root: install the 'redis-server' package first"
        exit 1
    fi
    log "installing redis-server from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends redis-server >&2
    command -v redis-server >/dev/null || { log "redis-server installed but not on PATH"; exit 1; }
fi
log "using $(redis-server --version)"

mkdir -p "$DIR"
PIDFILE="$DIR/redis.pid"
PORTFILE="$DIR/port"

answers() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Reuse the server this script started earlier, if it is still up.
if [ -s "$PIDFILE" ] && [ -s "$PORTFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null \
    && answers "$(cat "$PORTFILE")"; then
    PORT=$(cat "$PORTFILE")
    log "already running on 127.0.0.1:$PORT"
else
    while port_in_use "$PORT"; do
        PORT=$((PORT + 1))
    done
    log "starting on 127.0.0.1:$PORT"
    rm -f "$PIDFILE"
    redis-server --bind 127.0.0.1 --port "$PORT" --daemonize yes \
        --save '' --appendonly no --dir "$DIR" \
        --pidfile "$PIDFILE" --logfile "$DIR/server.log" >&2
    # Wait (at most 10 s) until it answers.
    for _ in $(seq 1 100); do
        answers "$PORT" && break
        sleep 0.1
    done
    answers "$PORT" || { log "start failed; server log:"; tail -n 30 "$DIR/server.log" >&2; exit 1; }
    echo "$PORT" >"$PORTFILE"
fi

echo "export TOWER_PATTERNS_REDIS_URL=redis://127.0.0.1:$PORT"
