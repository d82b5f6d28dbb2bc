#!/usr/bin/env bash
# Device probe for issue 8 (tools/device/nan_probe.py): after put_chunk.sh, builds models/student and
# data/pairs.jsonl with the DAG (config/qwen1.5b_gpu.yaml), then runs the probe. Writes $OUT/probe.json.
#   bash tools/device/run_probe.sh [seconds]
set -uo pipefail
GGUF=/tmp/q/qwen.gguf
SHA=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
if [ ! -f /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && touch /tmp/site/.installed || exit 1
fi
export PYTHONPATH="$PWD/src:/tmp/site" PATH="/tmp/site/bin:$PATH" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
[ -f /tmp/q/.verified ] || { echo "$SHA  $GGUF" | sha256sum -c - && touch /tmp/q/.verified; } || exit 1
mkdir -p /tmp/data
[ -f /tmp/data/strategyqa_train.json ] || cp -p .data/strategyqa_train.json /tmp/data/
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
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
