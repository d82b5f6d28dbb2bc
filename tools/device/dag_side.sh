#!/usr/bin/env bash
# A second snakemake on the same workdir, without the lock, for TARGETS whose inputs are all made
# (e.g. a variant whose job failed while the main run goes on). Runs in the background; log in
# /tmp/dag/side.log. Usage: bash tools/device/dag_side.sh TARGET...
set -uo pipefail
source tools/device/device_env.sh || exit 1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
setsid nohup bash -c "python3 -m snakemake $* --nolock --cores 8 --keep-going --rerun-incomplete \
  --configfile config.yaml config/qwen1.5b_gpu.yaml \
  --config data='{source: /tmp/data/strategyqa_train.json}' student='{model: $GGUF, dtype: bfloat16}' \
  > /tmp/dag/side.log 2>&1; echo \$? > /tmp/dag/side_rc" > /dev/null 2>&1 < /dev/null &
echo started side
