#!/usr/bin/env bash
# Wait up to SECONDS (default 540) for the benchmark that tools/device/bench_bg.sh started, then print its
# last lines and copy its JSON and log to $OUT.
#   bash tools/device/bench_poll.sh [SECONDS]
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
end=$(( $(date +%s) + ${1:-540} ))
while [ ! -f /tmp/bench/rc ] && [ "$(date +%s)" -lt "$end" ]; do sleep 3; done
echo "benchmark rc: $(cat /tmp/bench/rc 2>/dev/null || echo running)"
grep -E "^\[" /tmp/bench/log | tail -20
cp /tmp/bench/bench.json "$OUT/" 2>/dev/null; cp /tmp/bench/log "$OUT/bench.log"
