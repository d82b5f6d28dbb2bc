#!/usr/bin/env bash
# Start benchmarks/train_eval_benchmark.py in the background on the GPU machine (own process session,
# so it runs on across calls), e.g. while tools/device/put_chunk.sh uploads the GGUF: that upload is
# I/O only and leaves the GPU idle. Needs .whl-extra, .whl and .data carried before (device_env.sh's calls),
# and bitsandbytes (for the 4-bit rows) in two halves (prepare_carry.sh prints why): one call carrying .whl-bnb
# that runs `source tools/device/wheels.sh; stash_half .whl-bnb`, then this one carrying .whl-bnb2 and .data.
# The code is copied to /tmp/bench first, so later calls that refresh the checkout do not touch it.
# tools/device/dag_poll.sh brings back /tmp/bench/bench.json and its log.
#   bash tools/device/bench_bg.sh --rows A-seed B-seed A-default B-default --time-limit 150
set -uo pipefail
source tools/device/wheels.sh
install_wheels .whl-extra /tmp/site && install_wheels .whl /tmp/site && install_wheels .whl-bnb /tmp/site-bnb || exit 1
[ -f /tmp/site/.installed ] && [ -f /tmp/site-bnb/.installed-bnb ] || { echo "bench_bg: carry .whl-extra/, .whl/, .whl-bnb/ and .whl-bnb2/ first"; exit 1; }
# tests/tiny_model.py: the text the benchmark trains its tokenizer on
mkdir -p /tmp/bench/code/tests && cp -r src benchmarks workflow .data /tmp/bench/code/ \
  && cp tests/tiny_model.py /tmp/bench/code/tests/ || exit 1
cd /tmp/bench/code || exit 1
export PYTHONPATH="$PWD/src:/tmp/site:/tmp/site-bnb" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
args=$(printf ' %q' "$@")
setsid nohup bash -c "python3 benchmarks/train_eval_benchmark.py --strategyqa .data/strategyqa_train.json \
  --out /tmp/bench/bench.json $args > /tmp/bench/log 2>&1; echo \$? > /tmp/bench/rc" > /dev/null 2>&1 < /dev/null &
sleep 2
echo "benchmark started: $(pgrep -f train_eval_benchmark.py | head -1)"
