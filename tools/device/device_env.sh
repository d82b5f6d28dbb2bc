# Sourced by run_dag.sh and run_probe.sh on the GPU machine: installs the carried wheels (.whl/) once,
# checks the GGUF that put_chunk.sh assembled, copies the carried data (.data/) once, and exports
# PYTHONPATH/PATH, GGUF and OUT. Returns non-zero on any failure.
GGUF=/tmp/q/qwen.gguf
SHA=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
# .whl-extra/ (the largest wheels: transformers, pulp) travels in a call of its own, before .whl/, when
# checkout + .whl/ would pass the 64 MiB carry limit; pip --target --upgrade replaces a shared bin/, so
# it goes first.
if [ -d .whl-extra ] && [ ! -f /tmp/site/.installed-extra ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl-extra/*.whl \
    && touch /tmp/site/.installed-extra || return 1
fi
if [ ! -f /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && touch /tmp/site/.installed || return 1
fi
export PYTHONPATH="$PWD/src:/tmp/site" PATH="/tmp/site/bin:$PATH" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [ ! -f /tmp/q/.verified ]; then
  echo "$SHA  $GGUF" | sha256sum -c - && touch /tmp/q/.verified || return 1
fi
mkdir -p /tmp/data
# -p keeps the mtime: a fresh copy on every call would make Snakemake rerun the whole DAG
[ -f /tmp/data/strategyqa_train.json ] || cp -p .data/strategyqa_train.json /tmp/data/ || return 1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
