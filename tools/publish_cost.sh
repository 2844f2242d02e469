#!/bin/sh
# Instructions per publish, Hub against tokio::sync::broadcast, counted by
# callgrind (tools/src/bin/publish_cost.rs). Run from the workspace root after
#   CARGO_BUILD_JOBS=1 cargo build --release -p tower-sse-tools --bin publish_cost
# With MISSES=1, also the L1 data-cache misses per publish (reads and writes)
# of callgrind's cache simulation (32 KiB, 8-way: counted, not timed, so
# the machine's load does not move them, though where the heap lands does,
# by a few from run to run: take the median of several runs).
set -eu
bin=${BIN:-target/release/publish_cost}
# Prints "instructions d1-misses" for one run of $bin with these arguments.
run() {
    if [ "${MISSES:-0}" = 1 ]; then
        out=$(mktemp)
        valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file="$out" "$bin" "$1" "$2" "$3" >/dev/null 2>&1
        callgrind_annotate "$out" | tr -d ',' | sed 's/([0-9.]*%)//g' |
            awk '/PROGRAM TOTALS/ { print $1, $5 + $6; exit }'
        rm -f "$out"
    else
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" "$3" 2>&1 |
            sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' | awk '{ print $1, 0 }'
    fi
}
# Per publish, in the steady state: the difference between 30 000 and 10 000
# publishes, over 20 000. Prints "instructions misses".
count() {
    run "$1" "$2" 30000 | { read -r i3 m3; run "$1" "$2" 10000 | {
        read -r i1 m1
        awk -v a="$i1" -v b="$i3" -v c="$m1" -v d="$m3" 'BEGIN { printf "%d %.2f\n", (b - a) / 20000, (d - c) / 20000 }'
    }; }
}
for topics in ${TOPICS:-1 16 1024}; do
    hub=$(count hub "$topics")
    pb=$(count publisher "$topics")
    bc=$(count broadcast "$topics")
    echo "$topics $hub $pb $bc" | awk -v m="${MISSES:-0}" '{
        printf "%5d topics: hub %5d (%.2fx), publisher %5d (%.2fx), broadcast %5d instructions per publish\n", $1, $2, $2 / $6, $4, $4 / $6, $6
        if (m == 1) printf "%5d topics: hub %.2f, publisher %.2f, broadcast %.2f L1 data misses per publish\n", $1, $3, $5, $7
    }'
done
