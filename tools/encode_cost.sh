#!/bin/sh
# Instructions per event built and encoded, counted by callgrind
# (tools/src/bin/encode_cost.rs). Run from the workspace root after
#   cargo build --release -p tower-sse-tools --bin encode_cost
# BIN=another/build/encode_cost compares a second build.
set -eu
bin=${BIN:-target/release/encode_cost}
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
for case in ${CASES:-typical multiline_20 comment}; do
    echo "$case: $(( ($(count "$case" 30000) - $(count "$case" 10000)) / 20000 )) instructions per event"
done
