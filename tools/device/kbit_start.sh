#!/usr/bin/env bash
# Issue 19's accuracy check of kbit_upcast on real weights: Phases A and B of Qwen2.5-Coder-1.5B in 4-bit NF4
# (config/qwen1.5b_gpu_4bit.yaml), once with PEFT's fp32 cast of the weights that are not 4-bit ("on") and once
# without (+ config/qwen1.5b_gpu_4bit_nofp32.yaml, "off"), each arm in its own copy of the workflow under
# /tmp/kc, and a third, "b64", that also trains Phase B in micro-batches of 64
# (+ config/qwen1.5b_gpu_4bit_b64.yaml). The shared part (student, splits, drafts, corpora) runs once, in
# "on"; "off" and "b64" start from copies of it, so only the training differs. Runs in the background in
# its own process session; poll with tools/device/kbit_poll.sh. Needs the GGUF (put_chunk.sh),
# .whl-extra/.whl/.data (device_env.sh) and bitsandbytes (installed by bench_bg.sh, after
# `stash_half .whl-bnb`: wheels.sh) on the machine.
#   bash tools/device/kbit_start.sh
set -uo pipefail
source tools/device/device_env.sh || exit 1
[ -f /tmp/site-bnb/.installed-bnb ] || { echo "kbit_start: bitsandbytes is not installed: stash_half .whl-bnb, then bench_bg.sh (tools/device/wheels.sh)"; exit 1; }
root=/tmp/kc
rm -rf "$root" && mkdir -p "$root/on" && cp -a Snakefile config.yaml config envs workflow src "$root/on/" || exit 1
export PYTHONPATH="$root/on/src:${PYTHONPATH#*:}" PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
base="config.yaml config/qwen1.5b_gpu.yaml config/qwen1.5b_gpu_4bit.yaml"
common="--cores 16 --config data='{source: /tmp/data/strategyqa_train.json}' student='{model: $GGUF, dtype: bfloat16}'"
setsid nohup bash -c "
  cd $root/on && python3 -m snakemake models/cot_phaseB --until build_corpora build_phase_b_corpus $common \
    --configfile $base > $root/shared.log 2>&1 || { echo shared \$? > $root/rc; exit; }
  cp -a $root/on $root/off
  (cd $root/on && python3 -m snakemake models/cot_phaseB $common --configfile $base > $root/on.log 2>&1; echo \$? > $root/on.rc) &
  cp -a $root/on $root/b64
  (cd $root/off && python3 -m snakemake models/cot_phaseB $common --configfile $base config/qwen1.5b_gpu_4bit_nofp32.yaml \
    > $root/off.log 2>&1; echo \$? > $root/off.rc) &
  (cd $root/b64 && python3 -m snakemake models/cot_phaseB $common --configfile $base config/qwen1.5b_gpu_4bit_nofp32.yaml \
    config/qwen1.5b_gpu_4bit_b64.yaml > $root/b64.log 2>&1; echo \$? > $root/b64.rc) &
  wait; echo \"on \$(cat $root/on.rc) off \$(cat $root/off.rc) b64 \$(cat $root/b64.rc)\" > $root/rc" > /dev/null 2>&1 < /dev/null &
sleep 2
echo "started: $(pgrep -f 'snakemake models/cot_phaseB' | head -1)"
