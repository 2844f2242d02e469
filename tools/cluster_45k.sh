#!/usr/bin/env bash
# 45,000 members on three chat nodes (issue 19): NODES chat nodes (release)
# share one private Redis; ROOMS rooms of N members each, one load-generator
# process per room (tools/src/bin/loadgen/), whose EventSource-like clients
# start on node i mod NODES and move to the next node on every reconnection
# (round robin, as behind a balancer without sticky sessions); once every
# room's members have their snapshot and SETTLE_S passed, M posts per room,
# round robin over the nodes. Reports per room: delivered exactly once and in
# order, clients reconnected (target: at most 1 %), last-message p99; and for
# Redis: the script time per join (INFO commandstats: EVALSHA/EVAL usec during
# the joins over the joins) and used_cpu_sys + used_cpu_user over the joins.
#
#   tools/cluster_45k.sh                  # 3 nodes, 3 rooms x 15000, M=20
#   N=2000 tools/cluster_45k.sh           # a small rehearsal
#
# Environment: N (members per room, 15000), ROOMS (3), NODES (3), M (posts per
# room, 20), PACE (connections per second per room, 1000), INTERVAL_MS
# (between posts, 100), SETTLE_S (after a room's last snapshot before its
# posts, 30: the other rooms' storms should be over), DEADLINE_S (bound of each
# loadgen, 300), RETRY_CAP_MS (10000), HEARTBEAT_MS (15000), PRESENCE_TTL_MS
# (30000), MAX_STREAMS (the chat's cap on a node's streams, 1.1 x ROOMS x N /
# NODES), SKIP_BUILD, OUT (target/cluster_45k).
#
# Needs redis-server and redis-cli on the PATH, and an open-file limit above
# N + 100 per loadgen and above ROOMS x N / NODES + 100 per node (raised to
# the hard limit here). Every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/common.sh

export N="${N:-15000}" M="${M:-20}" PACE="${PACE:-1000}" INTERVAL_MS="${INTERVAL_MS:-100}"
export SETTLE_S="${SETTLE_S:-30}" DEADLINE_S="${DEADLINE_S:-300}"
export RETRY_CAP_MS="${RETRY_CAP_MS:-10000}" HEARTBEAT_MS="${HEARTBEAT_MS:-15000}"
export PRESENCE_TTL_MS="${PRESENCE_TTL_MS:-30000}"
ROOMS="${ROOMS:-3}"
NODES="${NODES:-3}"
OUT="${OUT:-target/cluster_45k}"
BIN="${CARGO_TARGET_DIR:-target}/release"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

per_node=$(((ROOMS * N + NODES - 1) / NODES))
# The chat's cap on a node's streams (10 000 by default, past it `503`, which
# ends an EventSource for good): room for every member, and the reconnections.
export MAX_STREAMS="${MAX_STREAMS:-$((per_node + per_node / 10))}"
raise_files $((N > per_node ? N : per_node)) "N=$N per loadgen, $per_node per node"

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p tower-sse-chat -p tower-sse-tools
fi

REDIS_PORT=$(free_port)
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
node_pids=()
gen_pids=()
cleanup() {
    local pid
    for pid in "${gen_pids[@]}" "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${gen_pids[@]}" "${node_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    # Only our own instance: its port, then its pid if it did not answer.
    rcli shutdown nosave >/dev/null 2>&1 || true
    if [ -s "$OUT/redis.pid" ]; then kill "$(cat "$OUT/redis.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

rm -f "$OUT/redis.pid"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$OUT" --daemonize yes --pidfile "$OUT/redis.pid" --logfile "$OUT/redis.log" \
    --maxclients 10000
timeout 10 bash -c "until redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG; do sleep 0.02; done"

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

# Redis's figures: script time (EVALSHA and EVAL, usec and calls) and CPU.
redis_stats() {
    local stats cpu
    stats=$(rcli info commandstats | tr -d '\r')
    cpu=$(rcli info cpu | tr -d '\r')
    awk -F'[:,=]' '/^cmdstat_(evalsha|eval):/ { calls += $3; usec += $5 }
        END { printf "%d %d ", calls, usec }' <<<"$stats"
    awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.3f\n", s }' <<<"$cpu"
}
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

rcli config resetstat >/dev/null
read -r calls0 usec0 rcpu0 < <(redis_stats)
node_cpu0=0
for pid in "${node_pids[@]}"; do node_cpu0=$((node_cpu0 + $(cpu_of "$pid"))); done

echo "== $NODES chat nodes ($ADDRS) on redis 127.0.0.1:$REDIS_PORT:" \
    "$ROOMS rooms x N=$N, M=$M, PACE=$PACE/room"
for r in $(seq "$ROOMS"); do
    env ADDRS="$ADDRS" timeout $((DEADLINE_S + 60)) "$BIN/loadgen" \
        >"$OUT/room$r.log" 2>&1 &
    gen_pids+=($!)
done

# The joins are over once every room printed its snapshot line (or its
# loadgen ended): Redis's figures then are the join storm's.
joined_at=
for _ in $(seq $((DEADLINE_S * 5))); do
    done_rooms=0
    for r in $(seq "$ROOMS"); do
        if grep -q 'had their members snapshot' "$OUT/room$r.log" ||
            ! kill -0 "${gen_pids[$((r - 1))]}" 2>/dev/null; then
            done_rooms=$((done_rooms + 1))
        fi
    done
    if [ "$done_rooms" = "$ROOMS" ]; then
        joined_at=$SECONDS
        break
    fi
    sleep 0.2
done
# The presence events of the last joins are still being written: a little
# while, well within SETTLE_S, before the figures are read.
sleep "$((SETTLE_S > 10 ? 5 : SETTLE_S / 2))"
read -r calls1 usec1 rcpu1 < <(redis_stats)
# How the streams landed: established connections on each node's port.
per_node_streams=()
for a in "${addrs[@]}"; do
    per_node_streams+=("$(ss -Htn state established "sport = :${a##*:}" | wc -l)")
done

rc=0
for pid in "${gen_pids[@]}"; do wait "$pid" || rc=$?; done
gen_pids=()
read -r calls2 usec2 rcpu2 < <(redis_stats)
node_cpu2=0
for pid in "${node_pids[@]}"; do node_cpu2=$((node_cpu2 + $(cpu_of "$pid"))); done
rcli info commandstats | tr -d '\r' >"$OUT/commandstats.txt"

declare -A r
joins=0
for room in $(seq "$ROOMS"); do
    line=$(grep '^RESULT ' "$OUT/room$room.log" || echo RESULT)
    for kv in ${line#RESULT}; do r["$room.${kv%%=*}"]=${kv#*=}; done
    # Every stream opened is a join: the first ones and the reconnections
    # that got through.
    joins=$((joins + ${r["$room.connects"]:-0}))
done

echo
echo "cluster: $NODES nodes, $ROOMS rooms x $N members (PACE=$PACE/s per room), M=$M posts per room"
printf '%-38s' ""
for room in $(seq "$ROOMS"); do printf ' %18s' "room $room"; done
echo
for room in $(seq "$ROOMS"); do
    lost=${r["$room.lost"]:-}
    dups=${r["$room.dups"]:-}
    if [ -n "$lost" ] && [ "$lost" = 0 ] && [ "$dups" = 0 ] &&
        [ "${r["$room.complete"]}" = "${r["$room.n"]}" ]; then
        r["$room.once"]=yes
    else
        r["$room.once"]=no
    fi
done
line() {
    local label=$1 key=$2 room
    printf '%-38s' "$label"
    for room in $(seq "$ROOMS"); do printf ' %18s' "${r["$room.$key"]:--}"; done
    echo
}
pair() {
    local label=$1 a=$2 b=$3 room
    printf '%-38s' "$label"
    for room in $(seq "$ROOMS"); do
        printf ' %18s' "${r["$room.$a"]:--} / ${r["$room.$b"]:--}"
    done
    echo
}
pair "delivered / expected" delivered expected
line "exactly once and in order" once
pair "clients with the last message" complete n
pair "duplicates / lost or out of order" dups lost
pair "clients with their snapshot / streams" subscribed connects
line "clients reconnected (%)" reconnected_pct
line "reconnections" reconnects
line "all snapshots after (s)" joined_s
pair "last-message latency p50 / p99 (ms)" p50_ms p99_ms
line "last-message latency max (ms)" max_ms

join_calls=$((calls1 - calls0))
join_usec=$((usec1 - usec0))
echo
awk -v j="$joins" -v c="$join_calls" -v u="$join_usec" -v c0="$rcpu0" -v c1="$rcpu1" \
    -v c2="$rcpu2" -v u2="$((usec2 - usec0))" -v k2="$((calls2 - calls0))" \
    -v ncpu="$(((node_cpu2 - node_cpu0)))" 'BEGIN {
    jj = j > 0 ? j : 1;
    printf "joins (streams opened, reconnections too)  %d\n", j;
    printf "redis scripts during the joins             %d calls, %.2f s\n", c, u / 1e6;
    printf "redis script time per join                 %.1f us (%.2f calls per join)\n", u / jj, c / jj;
    printf "redis CPU (sys+user) during the joins      %.2f s = %.1f us per join\n", c1 - c0, (c1 - c0) * 1e6 / jj;
    printf "redis scripts, whole run                   %d calls, %.2f s\n", k2, u2 / 1e6;
    printf "redis CPU (sys+user), whole run            %.2f s\n", c2 - c0;
    printf "chat nodes CPU, whole run                  %.2f s\n", ncpu / 100;
}'
echo "open connections per node after the joins: ${per_node_streams[*]} (nodes ${addrs[*]})"
echo "per-command figures: $OUT/commandstats.txt; logs: $OUT/"
exit "$rc"
