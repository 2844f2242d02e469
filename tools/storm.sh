#!/usr/bin/env bash
# The join storm, measured side by side in one run: the chat (ours, crate
# tower-sse-chat in examples/chat) against tools/src/bin/anchor_chat.rs (plain
# axum + tokio::sync::broadcast, same wire contract). For each server in turn:
# start it on a free loopback port with the open-file limit raised to the hard
# limit, open N EventSource-like clients into one room as fast as possible
# (tools/src/bin/loadgen/), post M messages, and collect the loadgen's RESULT
# line. Prints one table.
#
#   tools/storm.sh                       # N=5000 M=50
#   N=2000 M=20 tools/storm.sh
#   SKIP_ANCHOR=1 tools/storm.sh         # ours only, for quick experiments
#
# Environment: N (clients, 5000), M (messages, 50), PACE (connections per
# second, 0 = all at once), INTERVAL_MS (between posts, 10), SETTLE_S (pause
# between the last snapshot and the first post, 0), DEADLINE_S (bound of each
# loadgen run, 120), RETRY_CAP_MS (10000), HEARTBEAT_MS (15000), OURS and
# ANCHOR (the binaries to run, `chat` and `anchor_chat`), SKIP_ANCHOR,
# SKIP_BUILD, OUT (where logs go, target/storm).
#
# Builds with `cargo build --release -p tower-sse-chat -p tower-sse-tools`,
# then runs the binaries directly (the same as `cargo run --release --example
# chat`), so that SERVER_PID is the server's own pid and its RSS is read from
# /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/common.sh

export N="${N:-5000}" M="${M:-50}" PACE="${PACE:-0}" INTERVAL_MS="${INTERVAL_MS:-10}"
export SETTLE_S="${SETTLE_S:-0}" DEADLINE_S="${DEADLINE_S:-120}"
export RETRY_CAP_MS="${RETRY_CAP_MS:-10000}" HEARTBEAT_MS="${HEARTBEAT_MS:-15000}"
OURS="${OURS:-chat}"
ANCHOR="${ANCHOR:-anchor_chat}"
OUT="${OUT:-target/storm}"
BIN="${CARGO_TARGET_DIR:-target}/release"
mkdir -p "$OUT"

raise_files "$N" "N=$N clients"

servers=("$OURS")
[ -n "${SKIP_ANCHOR:-}" ] || servers+=("$ANCHOR")

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p tower-sse-chat -p tower-sse-tools
fi

declare -A result
server_pid=
cleanup() { [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

# Runs the loadgen against one server; leaves its RESULT fields in `result`.
run() {
    local name=$1 log="$OUT/$1.server.log" addr=
    : >"$log"
    ADDR=127.0.0.1:0 "$BIN/$name" >>"$log" 2>&1 &
    server_pid=$!
    addr=$(wait_listening "$log" "$name")
    run_loadgen "$name"
}

for s in "${servers[@]}"; do
    run "$s"
done

row() {
    local label=$1 key=$2 a b ratio=
    a=${result["$OURS.$key"]:--}
    b=${result["$ANCHOR.$key"]:--}
    if [ -z "${SKIP_ANCHOR:-}" ]; then
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {
            if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2fx", a / b;
            else print "" }')
        printf '%-34s %14s %14s %10s\n' "$label" "$a" "$b" "$ratio"
    else
        printf '%-34s %14s\n' "$label" "$a"
    fi
}

echo
echo "join storm: N=$N clients into one room at PACE=$PACE/s (0 = at once), then M=$M messages"
if [ -z "${SKIP_ANCHOR:-}" ]; then
    printf '%-34s %14s %14s %10s\n' "" "$OURS" "$ANCHOR" "ours/anchor"
else
    printf '%-34s %14s\n' "" "$OURS"
fi
row "clients with the last message" complete
row "clients cut off by the server" cut_clients
row "streams cut off" cutoffs
row "reconnections" reconnects
row "duplicates" dups
row "lost / out of order" lost
row "server RSS per client (KiB)" rss_kib_per_client
row "server peak RSS per client (KiB)" peak_kib_per_client
row "last-message latency p50 (ms)" p50_ms
row "last-message latency p99 (ms)" p99_ms
row "last-message latency max (ms)" max_ms
row "first post to last msg p50 (ms)" drain_p50_ms
row "first post to last msg p99 (ms)" drain_p99_ms
row "all snapshots after (s)" joined_s
row "all clients done after (s)" done_s
row "server CPU time (s)" server_cpu_s
row "loadgen CPU time (s)" loadgen_cpu_s
row "loadgen exit status" exit
echo "logs: $OUT/"
