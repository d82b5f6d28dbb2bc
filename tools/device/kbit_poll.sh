#!/usr/bin/env bash
# Wait up to SECONDS (default 540) for tools/device/kbit_start.sh's three arms, then print where they are and
# write $OUT/kbit.tgz: each arm's logs (training logs with dev accuracy by epoch, wall time and peak GPU
# memory; rule logs and benchmarks) and the shared part's log.
#   bash tools/device/kbit_poll.sh [SECONDS]
set -uo pipefail
OUT=${OUT:-/tmp/out}
root=/tmp/kc
mkdir -p "$OUT"
end=$(( $(date +%s) + ${1:-540} ))
while [ ! -f $root/rc ] && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
[ -f $root/rc ] && echo "done: $(cat $root/rc)" || echo "still running"
for arm in shared on off b64; do
  [ -f $root/$arm.log ] && { echo "== $arm"; grep -E "steps \(|Error|error|Finished job|Exiting" $root/$arm.log | tail -6; }
done
grep -h "dev .* accuracy\|kept epoch" $root/*/logs/train_phase_*.log 2>/dev/null
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
(cd $root && tar czf "$OUT/kbit.tgz" shared.log on.log off.log b64.log rc on/logs off/logs b64/logs \
  $(find on/models off/models b64/models -name training_log.json 2>/dev/null) 2>/dev/null)
ls -la "$OUT"
