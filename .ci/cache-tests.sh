#!/usr/bin/env bash
# Conformance: examples/caching_proxy under the public HTTP cache test suite
# (cache-tests.fyi; npm package http-cache-tests, release 0.4.5).
#
# Installs the suite from npm (once, into the build cache), starts its origin
# server and our proxy in front of it on free loopback ports, runs the
# suite's command-line client against the proxy, and prints how many
# `required`, `optimal` and `check` tests passed, counted the way the
# published figures are (.ci/cache-tests-count.mjs; CONFORMANCE.md has them
# beside ours). Fails when fewer required or optimal tests pass than the
# figures recorded below, so a change that breaks a rule fails CI.
#
#   bash .ci/cache-tests.sh                 # CI
#   CACHE_TESTS_ID=vary-2 bash .ci/cache-tests.sh   # one test, with the
#                                           # requests and responses the
#                                           # suite saw (debugging)
#
# Knobs (environment): CACHE_TESTS_DIR (where the suite is installed),
# CACHE_TESTS_OUT (the results JSON), CACHE_TESTS_PROXY (a proxy binary
# to test instead of caching_proxy; it is given --listen and --upstream).
set -euo pipefail
cd "$(dirname "$0")/.."

# The figures this suite gave on main; raise them when a change passes more.
REQUIRED_FLOOR=152
OPTIMAL_FLOOR=80
VERSION=0.4.5

target="${CARGO_TARGET_DIR:-target}"
dir="${CACHE_TESTS_DIR:-$target/cache-tests}"
out="${CACHE_TESTS_OUT:-$dir/results.json}"
suite="$dir/node_modules/http-cache-tests"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "cache-tests: installing Node.js and npm from Debian's packages"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ "$(node -p "require(require('path').resolve('$suite/package.json')).version" 2>/dev/null || true)" != "$VERSION" ]; then
    echo "cache-tests: installing http-cache-tests@$VERSION from npm into $dir"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --silent "http-cache-tests@$VERSION"
fi

if [ -z "${CACHE_TESTS_PROXY:-}" ]; then
    cargo build --all-features --example caching_proxy
    proxy_bin="$target/debug/examples/caching_proxy"
else
    proxy_bin="$CACHE_TESTS_PROXY"
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
origin_port=$(free_port)
proxy_port=$(free_port)
logs=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$logs"
}
trap cleanup EXIT

# The origin: the suite's own server (it reads its settings from npm's
# environment variables).
(cd "$suite" && npm_config_protocol=http npm_config_port="$origin_port" \
    npm_config_pidfile="$logs/origin.pid" exec node server/server.mjs) >"$logs/origin.log" 2>&1 &
pids+=($!)
"$proxy_bin" --listen "127.0.0.1:$proxy_port" --upstream "http://127.0.0.1:$origin_port" \
    >"$logs/proxy.log" 2>&1 &
pids+=($!)

# Wait (on a condition, with a deadline) until both accept connections.
accepts() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; }
for port in "$origin_port" "$proxy_port"; do
    for _ in $(seq 1 200); do
        accepts "$port" && break
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || { cat "$logs"/*.log; echo "cache-tests: a server exited"; exit 1; }
        done
        sleep 0.05
    done
    accepts "$port" || { cat "$logs"/*.log; echo "cache-tests: port $port not up within 10 s"; exit 1; }
done
echo "cache-tests: origin on :$origin_port, caching_proxy on :$proxy_port"

base="http://127.0.0.1:$proxy_port"
if [ -n "${CACHE_TESTS_ID:-}" ]; then
    (cd "$suite" && npm_config_base="$base" npm_config_id="$CACHE_TESTS_ID" node --no-warnings cli.mjs)
    exit 0
fi
(cd "$suite" && npm_config_base="$base" npm_package_config_id="" node --no-warnings cli.mjs) >"$out"
echo "cache-tests: results in $out"

counts=$(node .ci/cache-tests-count.mjs "$suite" "$out" --failing)
echo "$counts" | awk -F'\t' '$1 == "not-passed" { printf "    not passed: %-8s %s %s\n", $2, $3, $4 }'
required=$(echo "$counts" | awk '$1 == "required" { print $2 }')
optimal=$(echo "$counts" | awk '$1 == "optimal" { print $2 }')
echo "$counts" | grep -v '^not-passed' | awk '{ printf "cache-tests: %-8s %3d of %3d passed\n", $1, $2, $3 }'

failed=0
if [ "$required" -lt "$REQUIRED_FLOOR" ]; then
    echo "cache-tests: FAIL: $required required tests passed, recorded figure $REQUIRED_FLOOR"
    failed=1
fi
if [ "$optimal" -lt "$OPTIMAL_FLOOR" ]; then
    echo "cache-tests: FAIL: $optimal optimal tests passed, recorded figure $OPTIMAL_FLOOR"
    failed=1
fi
if [ "$failed" = 1 ]; then
    # What the proxy said of its upstream (a 502 says why here).
    echo "cache-tests: the proxy's log:"
    tail -n 40 "$logs/proxy.log" | sed 's/^/    /'
fi
exit "$failed"
