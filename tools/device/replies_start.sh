#!/usr/bin/env bash
# Generate the real-reply fixtures (issue 18) in the background on the GPU machine: the teacher and
# judge prompts sent to Qwen2.5-Coder-1.5B-Instruct (the GGUF from put_chunk.sh) through the hf
# backend. Writes /tmp/replies/raw_teacher.jsonl and raw_judge.jsonl; dag_poll.sh does not carry
# them back: tools/device/replies_collect.sh does.
set -uo pipefail
source tools/device/device_env.sh || exit 1
mkdir -p /tmp/replies
setsid nohup bash -c "python3 tests/data/replies/generate.py /tmp/data/strategyqa_train.json /tmp/replies hf $GGUF \
  > /tmp/replies/generate.log 2>&1; echo \$? > /tmp/replies/rc" > /dev/null 2>&1 < /dev/null &
echo started
