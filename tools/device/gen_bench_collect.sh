#!/usr/bin/env bash
# Copy the generation benchmark's results (tools/device/gen_bench.sh) to $OUT/genbench/.
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/genbench"
cp /tmp/genbench/*.json /tmp/genbench/*.log /tmp/genbench/rc "$OUT/genbench/" 2>/dev/null
ls -la "$OUT/genbench"; tail -2 /tmp/genbench/*.log
