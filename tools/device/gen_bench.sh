#!/usr/bin/env bash
# Generation before/after (issue 19) on the GPU machine, in the background: waits for the DAG's
# prepared student (models/student), then runs benchmarks/generation_benchmark.py on the first 128
# questions in draft, cot and cot_sc mode with the code before cot_sc batching (.before/src, commit
# 6c3dd02^, carried) and with this checkout's code, at batch 16 and 256. Writes /tmp/genbench/*.json;
# tools/device/gen_bench_collect.sh copies them to $OUT.
set -uo pipefail
source tools/device/device_env.sh || exit 1
mkdir -p /tmp/genbench
cat > /tmp/genbench/run.sh <<SCRIPT
while [ ! -f models/student/manifest.json ]; do sleep 5; done
sleep 5
common="models/student --questions 128 --max-new-tokens 160 --draft-tokens 64 --dtype bfloat16"
for run in before_b16:.before/src:16 after_b16:src:16 before_b256:.before/src:256 after_b256:src:256; do
  IFS=: read name code batch <<< "\$run"
  PYTHONPATH=\$PWD/\$code:/tmp/site python3 benchmarks/generation_benchmark.py \$common --batch-size \$batch \
    > /tmp/genbench/\$name.json 2> /tmp/genbench/\$name.log
done
echo done > /tmp/genbench/rc
SCRIPT
setsid nohup bash /tmp/genbench/run.sh > /tmp/genbench/run.log 2>&1 < /dev/null &
echo started
