#!/bin/sh
# Instructions per publish, Hub against tokio::sync::broadcast, counted by
# callgrind (tools/src/bin/publish_cost.rs). Run from the workspace root after
#   CARGO_BUILD_JOBS=1 cargo build --release -p tower-sse-tools --bin publish_cost
set -eu
bin=${BIN:-target/release/publish_cost}
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" "$3" 2>&1 |
        sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
for topics in ${TOPICS:-1 16 1024}; do
    hub=$(( ($(count hub "$topics" 30000) - $(count hub "$topics" 10000)) / 20000 ))
    pb=$(( ($(count publisher "$topics" 30000) - $(count publisher "$topics" 10000)) / 20000 ))
    bc=$(( ($(count broadcast "$topics" 30000) - $(count broadcast "$topics" 10000)) / 20000 ))
    awk -v t="$topics" -v h="$hub" -v p="$pb" -v b="$bc" \
        'BEGIN { printf "%5d topics: hub %5d (%.2fx), publisher %5d (%.2fx), broadcast %5d instructions per publish\n", t, h, h / b, p, p / b, b }'
done
