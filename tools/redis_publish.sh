#!/bin/sh
# Publishes per second through Redis from one node (tools/src/bin/redis_publish.rs)
# beside the floor: one unpipelined client, redis-benchmark -P 1 -c 1 (each
# command waits for its answer before the next is sent). Same Redis, one run.
# The node publishes to 16 topics, then to one.
# Build first: CARGO_BUILD_JOBS=1 cargo build --release -p tower-sse-tools --bin redis_publish
set -eu
host=${REDIS_HOST:-127.0.0.1}
port=${REDIS_PORT:-6379}
export REDIS_URL="redis://$host:$port"
bin=${BIN:-target/release/redis_publish}
for round in 1 2 3; do
    echo "round $round"
    redis-benchmark -h "$host" -p "$port" -P 1 -c 1 -n 50000 -q -t set
    redis-benchmark -h "$host" -p "$port" -P 1 -c 1 -n 50000 -q xadd "floor-$$" MAXLEN '~' 1000 '*' d x
    "$bin" 64 5 16
    "$bin" 64 5 1
done
redis-cli -h "$host" -p "$port" del "floor-$$" >/dev/null
