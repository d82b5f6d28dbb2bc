#!/usr/bin/env bash
# Device probe for issue 8 (tools/device/nan_probe.py): after put_chunk.sh, builds models/student and
# data/pairs.jsonl with the DAG (config/qwen1.5b_gpu.yaml), then runs the probe. Writes $OUT/probe.json.
#   bash tools/device/run_probe.sh [seconds]
set -uo pipefail
source tools/device/device_env.sh || exit 1
start=$(date +%s)
python3 -m snakemake models/student data/pairs.jsonl data/splits/test.jsonl --cores 16 \
  --configfile config.yaml config/qwen1.5b_gpu.yaml \
  --config data='{source: /tmp/data/strategyqa_train.json}' student="{model: $GGUF, dtype: bfloat16}" \
  > "$OUT/snakemake.log" 2>&1 || { tail -20 "$OUT/snakemake.log"; exit 1; }
echo "DAG part done after $(( $(date +%s) - start )) s"
left=$(( ${1:-500} - ($(date +%s) - start) ))
timeout "$left" python3 tools/device/nan_probe.py --student models/student --pairs data/pairs.jsonl \
  --questions data/splits/test.jsonl --out "$OUT/probe.json" > "$OUT/probe.log" 2>&1
rc=$?
grep -E "^(bf16|fp32|ig)" "$OUT/probe.log"; grep -E "clarify.numerics" "$OUT/probe.log" | head -12
echo "probe exit $rc after $(( $(date +%s) - start )) s"
exit $rc
