#!/usr/bin/env bash
# What one multi-topic stream costs against as many single-topic streams
# (issue 20): C clients with K single-topic streams each (A) against C clients
# with one stream over the same K topics (B); server memory per client and per
# connection, publish-to-deliver p50/p99, server CPU while publishing, delivery
# completeness, and the ratios B / A. The program is
# tools/src/bin/multi_cost.rs (its doc comment says what each figure is).
#
#   tools/multi_cost.sh                                  # C=1000 K=8, 200 events at 50/s
#   tools/multi_cost.sh --clients 1000 --topics 8 --runs 2
#
# Scenario A holds C x K sockets in each process: the descriptor limit is
# raised to the hard limit here. SKIP_BUILD=1 runs the binary already built.
set -euo pipefail
cd "$(dirname "$0")/.."

ulimit -n "$(ulimit -Hn)"
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p tower-sse-tools --bin multi_cost
fi
exec "${CARGO_TARGET_DIR:-target}/release/multi_cost" "$@"
