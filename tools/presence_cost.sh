#!/usr/bin/env bash
# What presence costs Redis (issue 19): NODES RedisPresence instances join N
# members to one topic on a private redis-server, asking roster(topic, LIMIT)
# every ROSTER_EVERY joins; then ROSTERS rosters of the full room, an idle
# hold of a few renewal rounds, and every member leaving. Prints, per phase,
# the scripts' `INFO commandstats` (EVALSHA calls and usec_per_call) and
# Redis's CPU (used_cpu_user + used_cpu_sys) per join, roster, renewal round
# and leave. The program is crates/tower-sse-redis/examples/presence_cost.rs.
#
#   tools/presence_cost.sh                    # N=15000 NODES=3 LIMIT=1000 ROSTER_EVERY=100
#   ROSTER_EVERY=1 tools/presence_cost.sh     # a roster at every join, as the chat asks
#
# Environment: N (15000), NODES (3), LIMIT (1000), ROSTER_EVERY (100; 0 for
# none during the joins), ROSTERS (100), TTL_MS (3000), HOLD_ROUNDS (3),
# SKIP_BUILD, PORT (a free one by default).
#
# Needs `redis-server` and `redis-cli` on the PATH. Builds with
# `cargo build --release -p tower-sse-redis --example presence_cost`.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${CARGO_TARGET_DIR:-target}/release/examples/presence_cost"
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p tower-sse-redis --example presence_cost
fi

PORT="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
DIR=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" \
    >"$DIR/redis.log" 2>&1 &
REDIS=$!
trap 'kill "$REDIS" 2>/dev/null; wait "$REDIS" 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -p "$PORT" info server | grep -E '^redis_version' || true

REDIS_URL="redis://127.0.0.1:$PORT" "$BIN"
