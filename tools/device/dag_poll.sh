#!/usr/bin/env bash
# Wait up to SECONDS (default 540) for the background DAG (tools/device/dag_start.sh), then print its
# progress and write what it has produced so far to $OUT/results.tgz (scores, tables, figures, logs,
# training/DPO/pairs logs of every model and variant, all of data/; no adapters).
#   bash tools/device/dag_poll.sh [SECONDS]    # as long as a call allows (e.g. 560): a gap of over 30 s between calls gives the machine back
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
end=$(( $(date +%s) + ${1:-540} ))
while [ ! -f /tmp/dag/rc ] && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
[ -f /tmp/dag/rc ] && echo "snakemake exit $(cat /tmp/dag/rc)" || echo "still running"
grep -E "steps \(|Error|error|Finished job|Exiting" /tmp/dag/snakemake.log | tail -25
cp /tmp/dag/snakemake.log /tmp/dag/versions.txt "$OUT/" 2>/dev/null
# the training benchmark of tools/device/bench_bg.sh, when one ran: its rows, JSON and log (bench_poll.sh)
[ -d /tmp/bench ] && OUT=$OUT bash tools/device/bench_poll.sh 0
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
# data/ whole (splits, drafts, corpora, pairs, own samples: a few MB compressed): with results/ and the
# training logs, what the report reads, should the device time run out before it.
tar czf "$OUT/results.tgz" results logs data models/student/manifest.json \
  $(find models -name "*log.json" -not -path "*/checkpoints/*" 2>/dev/null) 2>/dev/null
ls -la "$OUT"
