#!/bin/sh
# The long runs behind bench/README.md: a 10-minute memory soak (bare then traced, so ~21 min),
# a 20 000-pair latency run and the peers table, figures as JSON into OUT (default bench-out/).
# Run from the repository root: sh bench/soak.sh [OUT]
set -eu
OUT=${1:-bench-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
bench() {
    "$PY" -m zltrace bench "$@" || true
}
bench latency --requests 20000 --json "$OUT/latency.json" | tee "$OUT/latency.txt"
bench throughput --concurrent 1 16 100 --json "$OUT/throughput.json" | tee "$OUT/throughput.txt"
bench memory --duration 600 --json "$OUT/memory.json" | tee "$OUT/memory.txt"
"$PY" bench/peers.py --json "$OUT/peers.json" | tee "$OUT/peers.txt"
