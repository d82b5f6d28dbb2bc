#!/usr/bin/env bash
# Write chunk NN of the Qwen GGUF (carried as .chunks/cNN/part) at its offset in /tmp/q/qwen.gguf.
# Chunks are CHUNK_MIB MiB (prepare_carry.sh splits with this size: checkout + chunk must stay under the 64 MiB
# carry limit); any order, repeatable. Usage: bash tools/device/put_chunk.sh NN
set -euo pipefail
CHUNK_MIB=32
N=$1
mkdir -p /tmp/q
(cd ".chunks/c$N" && sha256sum -c --quiet part.sha256)
dd if=".chunks/c$N/part" of=/tmp/q/qwen.gguf bs=1M seek=$((10#$N * CHUNK_MIB)) conv=notrunc status=none
ls -l /tmp/q/qwen.gguf
