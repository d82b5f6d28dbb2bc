#!/usr/bin/env bash
# Run the whole DAG of config/qwen1.5b_gpu.yaml on the GPU machine (issue 8); resumable.
# Before it: the GGUF assembled at /tmp/q/qwen.gguf by tools/device/put_chunk.sh (one call per chunk),
# .whl/ (wheels of what the machine lacks) and .data/ (strategyqa_train.json) carried.
#   bash tools/device/run_dag.sh [seconds] [before_c]
#     stops cleanly after that many seconds (default 540); call again to resume where it stopped.
#     before_c: only what does not depend on Phase C (Phase B and every base/A/B score, ablation and
#     attribution), with the training chain first. Phase C is not checkpointed, so a call that ends
#     inside it loses it: run before_c first, then the full target in the next call.
#   EXTRA_CONFIG="phase_c={learning_rate: 5.0e-6}" bash tools/device/run_dag.sh 575
#     adds key=value overrides to the run's --config (only the stages they touch rerun).
# Writes $OUT/results.tgz (report, figures, tables, logs, benchmarks) and $OUT/versions.txt.
set -uo pipefail
source tools/device/device_env.sh || exit 1
{
  python3 -c "import sys, torch, transformers, trl, peft, datasets, snakemake, tokenizers; print('python', sys.version.split()[0]); [print(m.__name__, m.__version__) for m in (torch, transformers, trl, peft, datasets, snakemake, tokenizers)]; print('gpu', torch.cuda.get_device_name(0))"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} > "$OUT/versions.txt" 2>&1
TARGETS=(results/report.md)
if [ "${2:-}" = before_c ]; then
  TARGETS=(models/cot_phaseB data/pairs.jsonl)
  for m in base phaseA phaseB; do
    TARGETS+=(results/scores/$m/direct.parquet results/scores/$m/draft.parquet results/scores/$m/cot.parquet
              results/ablations/$m.parquet results/attribution/$m.csv)
  done
fi
start=$(date +%s)
timeout -s INT "${1:-540}" python3 -m snakemake "${TARGETS[@]}" --prioritize models/cot_phaseB data/pairs.jsonl \
  --cores 16 --keep-going --rerun-incomplete \
  --configfile config.yaml config/qwen1.5b_gpu.yaml \
  --config data='{source: /tmp/data/strategyqa_train.json}' student="{model: $GGUF, dtype: bfloat16}" \
  ${EXTRA_CONFIG:+"$EXTRA_CONFIG"} > "$OUT/snakemake.log" 2>&1
rc=$?
echo "snakemake exit $rc after $(( $(date +%s) - start )) s" | tee -a "$OUT/snakemake.log"
grep -E "^\[|rule |Error|error|steps \(|done" "$OUT/snakemake.log" | tail -40
tar czf "$OUT/results.tgz" results logs models/student/manifest.json data/teacher_accounting.csv \
  $(ls models/*/training_log.json models/dpo_phaseC/*/dpo_log.json 2>/dev/null) 2>/dev/null
exit $rc
