#!/usr/bin/env bash
# Copy the real-reply generation's outputs (tools/device/replies_start.sh) to $OUT/replies/.
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/replies"
cp /tmp/replies/*.jsonl /tmp/replies/generate.log /tmp/replies/rc "$OUT/replies/" 2>/dev/null
tail -3 /tmp/replies/generate.log; ls -la "$OUT/replies"
