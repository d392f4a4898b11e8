#!/usr/bin/env bash
# Load: axum_server, built in release, under wrk at a saturating concurrency.
#
# Reports requests/s, p50/p99/max latency, the status mix and the server's
# peak memory, for a short run and then a long one against the same process.
# Fails on any status outside EXPECTED (no 500s), on any connection error,
# and when the server's memory after the long run exceeds what it held after
# the short one by more than LOAD_GROWTH_MB.
#
#   bash .ci/load.sh                      # CI: 5 s warm-up run + 20 s run
#   LOAD_SECONDS=300 bash .ci/load.sh     # the long version (RELIABILITY.md)
#
# Knobs (environment): LOAD_SECONDS (20), LOAD_SHORT_SECONDS (5),
# LOAD_CONNECTIONS (200), LOAD_THREADS (2), LOAD_USERS (ids drawn from
# 1..N, default 1000), LOAD_GROWTH_MB (16), SERVER_ARGS (extra arguments for
# axum_server, e.g. "--fail-rate 0.2").
set -euo pipefail
cd "$(dirname "$0")/.."

LONG=${LOAD_SECONDS:-20}
SHORT=${LOAD_SHORT_SECONDS:-5}
CONNS=${LOAD_CONNECTIONS:-200}
THREADS=${LOAD_THREADS:-2}
GROWTH_MB=${LOAD_GROWTH_MB:-16}
# 200: served (cache or upstream); 404: no such user (the upstream's answer);
# 502: the upstream failed; 503: overloaded (limit) or the breaker is open;
# 504: the upstream did not answer in time.
EXPECTED=" 200 404 502 503 504 "
export LOAD_USERS=${LOAD_USERS:-1000}

if ! command -v wrk >/dev/null; then
    echo "load: installing wrk from Debian's packages"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

# The bench profile is release's; building with it reuses what
# `cargo bench --no-run` compiled, so CI builds the optimised profile once.
cargo build --profile bench --all-features --example axum_server
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/examples/axum_server"

log=$(mktemp)
# shellcheck disable=SC2086
"$bin" --port 0 ${SERVER_ARGS:-} >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT

addr=""
for _ in $(seq 1 100); do
    addr=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/listening on //') || true
    [ -n "$addr" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; echo "load: axum_server exited"; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { cat "$log"; echo "load: axum_server did not start within 10 s"; exit 1; }
echo "load: axum_server at $addr (pid $server); $CONNS connections, $THREADS threads, ids 1..$LOAD_USERS"

kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$server/status"; }

failed=0
run() {
    local seconds=$1 out
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${seconds}s" --timeout 5s -s .ci/load.lua "$addr")
    echo "$out" | grep -v '^LOAD ' | sed 's/^/    /'
    local line
    line=$(echo "$out" | grep '^LOAD ')
    echo "load: ${seconds}s: ${line#LOAD }; rss=$(($(kib VmRSS) / 1024)) MiB peak=$(($(kib VmHWM) / 1024)) MiB"
    local errors
    errors=$(echo "$line" | grep -o '\(connect\|read\|write\)_errors=[0-9]*\|timeouts=[0-9]*' | awk -F= '{ s += $2 } END { print s + 0 }')
    if [ "$errors" -ne 0 ]; then
        echo "load: FAIL: $errors connection errors or timeouts"
        failed=1
    fi
    local statuses code
    statuses=$(echo "$line" | grep -o 'statuses=[0-9=,]*' | cut -d= -f2-)
    for pair in ${statuses//,/ }; do
        code=${pair%%=*}
        case "$EXPECTED" in
            *" $code "*) ;;
            *) echo "load: FAIL: status $code answered ${pair#*=} times"; failed=1 ;;
        esac
    done
}

run "$SHORT"
after_short=$(kib VmRSS)
run "$LONG"
after_long=$(kib VmRSS)
grew=$(((after_long - after_short) / 1024))
echo "load: memory after the ${SHORT}s run $((after_short / 1024)) MiB, after the ${LONG}s run $((after_long / 1024)) MiB (grew ${grew} MiB; bound ${GROWTH_MB} MiB); peak $(($(kib VmHWM) / 1024)) MiB"
if [ "$grew" -gt "$GROWTH_MB" ]; then
    echo "load: FAIL: memory grew by ${grew} MiB between the runs"
    failed=1
fi
kill -0 "$server" 2>/dev/null || { echo "load: FAIL: axum_server died under load"; failed=1; }
exit "$failed"
