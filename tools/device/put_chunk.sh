#!/usr/bin/env bash
# Write chunk NN of the Qwen GGUF (carried as .chunks/cNN/part) at its offset in /tmp/q/qwen.gguf.
# Chunks are 44 MiB (split -b 44M -d -a 2: the checkout is ~17 MB, and checkout + chunk must stay under the 64 MiB carry limit); any order, repeatable. Usage: bash tools/device/put_chunk.sh NN
set -euo pipefail
N=$1
mkdir -p /tmp/q
(cd ".chunks/c$N" && sha256sum -c --quiet part.sha256)
dd if=".chunks/c$N/part" of=/tmp/q/qwen.gguf bs=1M seek=$((10#$N * 44)) conv=notrunc status=none
ls -l /tmp/q/qwen.gguf
