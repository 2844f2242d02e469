#!/usr/bin/env bash
# The join storm against nginx + nchan (issue 19), side by side in one run on
# the same machine with the same EventSource-like clients
# (tools/src/bin/loadgen/, which reconnect with Last-Event-ID): first the chat
# (crate tower-sse-chat, release), then nginx with an `nchan_subscriber
# eventsource` location (a 16,384-message, 10-minute buffer) and an
# `nchan_publisher` location, one worker, `master_process off`, `daemon off`,
# on a free loopback port with its own prefix and temp dirs. For each: N
# members join one room as fast as they connect (PACE=0), then M posts; the
# loadgen's RESULT line gives delivered/expected and order, the server's RSS
# after the storm minus before divided by N, the last message's latency, and
# the server's CPU time for the run (utime + stime from /proc/PID/stat). Prints
# one table with the ratios tower-sse / nchan.
#
#   tools/nchan_storm.sh                  # N=5000 M=5
#   N=10000 tools/nchan_storm.sh
#   ONLY=nchan N=1000 tools/nchan_storm.sh
#
# Environment: N (members, 5000), M (posts, 5), PACE (connections per second,
# 0 = all at once), INTERVAL_MS (between posts, 10), SETTLE_S (pause between
# the last join and the first post, 0), DEADLINE_S (bound of each loadgen run,
# 180), RETRY_CAP_MS (10000), ONLY (`chat` or `nchan` to run one side),
# SKIP_BUILD, OUT (logs and nginx's prefix, target/nchan_storm), NGINX (the
# binary, nginx), NCHAN_MODULE (the module's .so, found under
# /usr/lib/nginx/modules or /usr/share/nginx/modules).
#
# Installs nginx-light and libnginx-mod-nchan with apt-get when nginx or the
# module is missing. Needs an open-file limit above N + 100 (raised to the
# hard limit here).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/common.sh

export N="${N:-5000}" M="${M:-5}" PACE="${PACE:-0}" INTERVAL_MS="${INTERVAL_MS:-10}"
export SETTLE_S="${SETTLE_S:-0}" DEADLINE_S="${DEADLINE_S:-180}"
export RETRY_CAP_MS="${RETRY_CAP_MS:-10000}"
ONLY="${ONLY:-}"
NGINX="${NGINX:-nginx}"
OUT="${OUT:-target/nchan_storm}"
BIN="${CARGO_TARGET_DIR:-target}/release"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

raise_files "$N" "N=$N clients"

find_module() {
    local d
    for d in /usr/lib/nginx/modules /usr/share/nginx/modules; do
        if [ -f "$d/ngx_nchan_module.so" ]; then
            echo "$d/ngx_nchan_module.so"
            return
        fi
    done
}
if [ "$ONLY" != chat ]; then
    NCHAN_MODULE="${NCHAN_MODULE:-$(find_module)}"
    if ! command -v "$NGINX" >/dev/null || [ -z "$NCHAN_MODULE" ]; then
        echo "installing nginx-light and libnginx-mod-nchan" >&2
        apt-get install -y nginx-light libnginx-mod-nchan >&2 ||
            { apt-get update >&2 && apt-get install -y nginx-light libnginx-mod-nchan >&2; }
        NCHAN_MODULE=$(find_module)
    fi
    NGINX=$(command -v "$NGINX")
fi

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p tower-sse-chat -p tower-sse-tools
fi

server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Starts the chat on a free port; sets server_pid and addr.
start_chat() {
    local log="$OUT/chat.server.log"
    : >"$log"
    ADDR=127.0.0.1:0 "$BIN/chat" >>"$log" 2>&1 &
    server_pid=$!
    addr=$(wait_listening "$log" "the chat")
}

# Writes nginx's configuration under its own prefix and starts it in the
# foreground (one process: no master, one worker); sets server_pid and addr.
start_nchan() {
    local prefix="$OUT/nginx" port nofile
    port=$(free_port)
    nofile=$(ulimit -n)
    if [ "$nofile" = unlimited ] || [ "$nofile" -gt 65535 ]; then nofile=65535; fi
    rm -rf "$prefix"
    mkdir -p "$prefix/tmp" "$prefix/logs"
    cat >"$prefix/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
master_process off;
daemon off;
worker_processes 1;
worker_rlimit_nofile $nofile;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
events {
    worker_connections $((N + 1000));
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    nchan_shared_memory_size 256M;
    nchan_message_buffer_length 16384;
    nchan_message_timeout 10m;
    server {
        # The same accept backlog as the chat's (tokio's 1024).
        listen 127.0.0.1:$port backlog=1024;
        location ~ ^/sub/(\w+)$ {
            nchan_subscriber eventsource;
            nchan_channel_id \$1;
        }
        location ~ ^/pub/(\w+)$ {
            nchan_publisher;
            nchan_channel_id \$1;
        }
    }
}
EOF
    "$NGINX" -p "$prefix" -e "$prefix/logs/error.log" -c "$prefix/nginx.conf" \
        >"$OUT/nchan.server.log" 2>&1 &
    server_pid=$!
    addr=127.0.0.1:$port
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "nginx did not start:" >&2
    cat "$OUT/nchan.server.log" "$prefix/logs/error.log" >&2
    exit 1
}

declare -A result
# Runs the loadgen against one server; leaves its RESULT fields in `result`.
run() {
    local name=$1 protocol=$2
    "start_$name"
    run_loadgen "$name" PROTOCOL="$protocol"
    local d=${result["$name.delivered"]:-} e=${result["$name.expected"]:-}
    result["$name.delivered_of"]="${d:--}/${e:--}"
    if [ -n "$d" ] && [ "${result["$name.lost"]}" = 0 ] && [ "${result["$name.dups"]}" = 0 ]; then
        result["$name.in_order"]=yes
    else
        result["$name.in_order"]=no
    fi
}

[ "$ONLY" = nchan ] || run chat chat
[ "$ONLY" = chat ] || run nchan nchan

row() {
    local label=$1 key=$2 a b ratio
    a=${result["chat.$key"]:--}
    b=${result["nchan.$key"]:--}
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2fx", a / b;
        else print "" }')
    printf '%-36s %16s %16s %12s\n' "$label" "$a" "$b" "$ratio"
}

echo
echo "join storm: N=$N members into one room at PACE=$PACE/s (0 = at once), then M=$M posts"
printf '%-36s %16s %16s %12s\n' "" "tower-sse chat" "nginx + nchan" "tower/nchan"
row "delivered / expected" delivered_of
row "every client in order, no dups" in_order
row "clients with the last message" complete
row "reconnections" reconnects
row "memory per member (KiB)" rss_kib_per_client
row "peak memory per member (KiB)" peak_kib_per_client
row "last-message latency p50 (ms)" p50_ms
row "last-message latency p99 (ms)" p99_ms
row "all joined after (s)" joined_s
row "all delivered after (s)" done_s
row "server CPU for the run (s)" server_cpu_s
row "loadgen CPU (s)" loadgen_cpu_s
row "loadgen exit status" exit
echo "logs: $OUT/"
