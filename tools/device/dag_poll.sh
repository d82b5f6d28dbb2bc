#!/usr/bin/env bash
# Wait up to SECONDS (default 540) for the background DAG (tools/device/dag_start.sh), then print its
# progress and write what it has produced so far to $OUT/results.tgz (scores, tables, figures, logs,
# training/DPO/pairs logs of every model and variant; no adapters).
#   bash tools/device/dag_poll.sh [SECONDS]
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
end=$(( $(date +%s) + ${1:-540} ))
while [ ! -f /tmp/dag/rc ] && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
[ -f /tmp/dag/rc ] && echo "snakemake exit $(cat /tmp/dag/rc)" || echo "still running"
grep -E "steps \(|Error|error|Finished job|Exiting" /tmp/dag/snakemake.log | tail -25
cp /tmp/dag/snakemake.log /tmp/dag/versions.txt "$OUT/" 2>/dev/null
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
tar czf "$OUT/results.tgz" results logs models/student/manifest.json data/teacher_accounting.csv \
  $(find data -maxdepth 3 -name "*.json" -o -maxdepth 3 -name "*accounting*" 2>/dev/null) \
  $(find models -name "*log.json" -not -path "*/checkpoints/*" 2>/dev/null) 2>/dev/null
ls -la "$OUT"
