#!/usr/bin/env bash
# Redis restarted empty under load (issue 17): three chat nodes share one
# private Redis; N EventSource-like clients (tools/src/bin/loadgen/) are spread over
# the nodes and move to the next node on every reconnection; M messages are
# posted round-robin over the nodes, and once FAULT_AFTER of them were
# accepted, Redis is shut down without saving and started again empty on the
# same port (the loadgen waits for it to answer PING, then posts the rest). The
# hub must deliver the new epoch in-band (`reset`, then its events) on the open
# streams: every accepted message reaches every client exactly once and in
# order, few clients reconnect, and the last message arrives soon.
#
#   tools/redis_restart.sh             # N=1500 M=20 FAULT_AFTER=10
#   FAULT=0 tools/redis_restart.sh     # the same run without the restart
#
# Environment: N (clients, 1500), M (messages, 20), FAULT (1 to restart Redis,
# 0 for the baseline), FAULT_AFTER (accepted messages before the restart,
# M/2), FAULT_DOWN_S (seconds Redis stays down before it is started again, 0),
# NODES (chat nodes, 3), PACE (connections per second, 1000),
# INTERVAL_MS (between posts, 100), SETTLE_S (20: the join storm of N members
# through Redis must be over before the posts, or it is what gets measured),
# DEADLINE_S (bound of the loadgen run, 120), RETRY_CAP_MS (10000),
# HEARTBEAT_MS (15000), PRESENCE_TTL_MS (30000), SKIP_BUILD, OUT (where logs
# go, target/redis_restart).
#
# Needs `redis-server` and `redis-cli` on the PATH. Builds with `cargo build
# --release -p tower-sse-chat -p tower-sse-tools`, then runs the
# binaries directly. Prints the loadgen's RESULT line and a summary; exits with
# the loadgen's status.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/common.sh

export N="${N:-1500}" M="${M:-20}" PACE="${PACE:-1000}" INTERVAL_MS="${INTERVAL_MS:-100}"
export SETTLE_S="${SETTLE_S:-20}" DEADLINE_S="${DEADLINE_S:-120}"
export RETRY_CAP_MS="${RETRY_CAP_MS:-10000}" HEARTBEAT_MS="${HEARTBEAT_MS:-15000}"
export PRESENCE_TTL_MS="${PRESENCE_TTL_MS:-30000}"
FAULT="${FAULT:-1}"
FAULT_DOWN_S="${FAULT_DOWN_S:-0}"
NODES="${NODES:-3}"
OUT="${OUT:-target/redis_restart}"
BIN="${CARGO_TARGET_DIR:-target}/release"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

raise_files "$N" "N=$N clients"

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p tower-sse-chat -p tower-sse-tools
fi

REDIS_PORT=$(free_port)
# Daemonized with a pid file, so that the instance started by the fault
# command (which outlives it) is found and stopped by the cleanup too.
REDIS_START="redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no \
--dir '$OUT' --daemonize yes --pidfile '$OUT/redis.pid' --logfile '$OUT/redis.log'"
REDIS_WAIT="until redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG; do sleep 0.02; done"

node_pids=()
cleanup() {
    for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${node_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    # Only our own instance: its port, then its pid if it did not answer.
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    if [ -s "$OUT/redis.pid" ]; then kill "$(cat "$OUT/redis.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

: >"$OUT/redis.log"
eval "$REDIS_START"
timeout 10 bash -c "$REDIS_WAIT"

addrs=()
for i in $(seq "$NODES"); do
    log="$OUT/node$i.log"
    : >"$log"
    ADDR=127.0.0.1:0 REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "$BIN/chat" >>"$log" 2>&1 &
    node_pids+=($!)
    addrs+=("$(wait_listening "$log" "node $i")")
done
ADDRS=$(
    IFS=,
    echo "${addrs[*]}"
)

fault_env=()
if [ "$FAULT" != 0 ]; then
    # Shut down without saving, start again empty on the same port, and wait
    # until it answers: the nodes' connections fail and must find it again.
    fault_env=(FAULT_AFTER="${FAULT_AFTER:-$((M / 2))}"
        FAULT_CMD="redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1; \
while redis-cli -p $REDIS_PORT ping >/dev/null 2>&1; do sleep 0.01; done; \
sleep $FAULT_DOWN_S; $REDIS_START && timeout 10 sh -c '$REDIS_WAIT'")
fi

echo "== $NODES chat nodes ($ADDRS) on redis 127.0.0.1:$REDIS_PORT: N=$N M=$M" \
    "FAULT=$FAULT ${fault_env[0]:-} FAULT_DOWN_S=$FAULT_DOWN_S"
rc=0
env ADDRS="$ADDRS" "${fault_env[@]}" timeout $((DEADLINE_S + 60)) "$BIN/loadgen" \
    2>&1 | tee "$OUT/loadgen.log" || rc=$?

line=$(grep '^RESULT ' "$OUT/loadgen.log" || true)
if [ -z "$line" ]; then
    echo "the loadgen gave no RESULT (exit $rc)" >&2
    exit 1
fi
declare -A r
for kv in ${line#RESULT}; do r["${kv%%=*}"]=${kv#*=}; done
echo
echo "redis restart: N=$N clients on $NODES nodes, M=$M messages, FAULT=$FAULT" \
    "FAULT_DOWN_S=$FAULT_DOWN_S INTERVAL_MS=$INTERVAL_MS"
printf '%-36s %s\n' \
    "delivered / expected" "${r[delivered]} / ${r[expected]}" \
    "clients with the last message" "${r[complete]} / ${r[n]}" \
    "duplicates" "${r[dups]}" \
    "lost / out of order" "${r[lost]}" \
    "clients reconnected" "${r[reconnected_clients]} (${r[reconnected_pct]} %)" \
    "total reconnections" "${r[reconnects]}" \
    "reset / gap notices" "${r[resets]} / ${r[gaps]}" \
    "posts sent again (503, no answer)" "${r[post_retries]}" \
    "last-message latency p50 / p99 (ms)" "${r[p50_ms]} / ${r[p99_ms]}" \
    "last-message latency max (ms)" "${r[max_ms]}" \
    "loadgen exit status" "$rc"
echo "logs: $OUT/"
exit "$rc"
