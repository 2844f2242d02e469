#!/bin/sh
# Instructions per non-SSE request, bare service against SseLayer, counted by
# callgrind (tools/src/bin/layer_cost.rs). Run from the workspace root after
#   CARGO_BUILD_JOBS=1 cargo build --release -p tower-sse-tools --bin layer_cost
set -eu
bin=${BIN:-target/release/layer_cost}
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
bare1=$(count bare 1000); bare11=$(count bare 11000)
layer1=$(count layer 1000); layer11=$(count layer 11000)
bare=$(( (bare11 - bare1) / 10000 ))
layer=$(( (layer11 - layer1) / 10000 ))
echo "bare:  $bare instructions per request"
echo "layer: $layer instructions per request"
awk -v b="$bare" -v l="$layer" 'BEGIN { printf "ratio: %.3f (+%.1f %%)\n", l / b, (l / b - 1) * 100 }'
