#!/usr/bin/env bash
# Start the whole DAG of config/qwen1.5b_gpu.yaml in the background on the GPU machine, in its own
# process session (setsid), so it runs on across calls until the machine goes back: no job is cut at
# a call's 600 s limit. Poll it with tools/device/dag_poll.sh. Needs what run_dag.sh needs (the
# GGUF from put_chunk.sh, .whl/ and .data/ carried once).
#   bash tools/device/dag_start.sh            # EXTRA_CONFIG="k=v ..." adds --config overrides
#   PRIORITIZE="target ..." replaces the default --prioritize targets (the longest chain first)
#   CONFIGS="config.yaml config/qwen1.5b_gpu.yaml config/qwen1.5b_gpu_run4.yaml" bash tools/device/dag_start.sh
# Jobs run 2 threads each (resources.threads), so up to 8 share the 16 cores and the one GPU:
# the 1.5B model's generation leaves most of the GPU idle, and concurrent jobs fill it.
set -uo pipefail
source tools/device/device_env.sh || exit 1
mkdir -p /tmp/dag
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True   # 8 processes share the GPU: less fragmentation
python3 -c "import sys, torch, transformers, trl, peft, datasets, snakemake, tokenizers; print('python', sys.version.split()[0]); [print(m.__name__, m.__version__) for m in (torch, transformers, trl, peft, datasets, snakemake, tokenizers)]; print('gpu', torch.cuda.get_device_name(0))" > /tmp/dag/versions.txt 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> /tmp/dag/versions.txt
# shellcheck disable=SC2086
setsid nohup bash -c "python3 -m snakemake results/report.md \
  --prioritize ${PRIORITIZE:-models/cot_phaseB data/pairs.jsonl models/dpo_phaseC/round1 results/attribution/phaseB.csv results/attribution/phaseC.csv results/scores/phaseC/cot_sc.parquet} \
  --cores 16 --keep-going --rerun-incomplete \
  --configfile ${CONFIGS:-config.yaml config/qwen1.5b_gpu.yaml} \
  --config data='{source: /tmp/data/strategyqa_train.json}' student='{model: $GGUF, dtype: bfloat16}' \
  ${EXTRA_CONFIG:-} \
  > /tmp/dag/snakemake.log 2>&1; echo \$? > /tmp/dag/rc" > /dev/null 2>&1 < /dev/null &
sleep 2
echo "started: $(pgrep -f 'snakemake results/report.md' | head -1)"
