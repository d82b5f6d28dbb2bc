# Sourced by run_dag.sh and run_probe.sh on the GPU machine: installs the carried wheels once (.whl-extra/, .whl/: wheels.sh),
# checks the GGUF that put_chunk.sh assembled, copies the carried data (.data/) once, and exports
# PYTHONPATH/PATH, GGUF and OUT. Returns non-zero on any failure.
GGUF=/tmp/q/qwen.gguf
SHA=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
source tools/device/wheels.sh
install_wheels .whl-extra /tmp/site && install_wheels .whl /tmp/site || return 1
[ -f /tmp/site/.installed ] || { echo "device_env: carry .whl/ once (the wheels are not installed)"; return 1; }
export PYTHONPATH="$PWD/src:/tmp/site" PATH="/tmp/site/bin:$PATH" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# bitsandbytes, once bench_bg.sh's two calls installed it: 4-bit runs (kbit_start.sh) need it
[ -f /tmp/site-bnb/.installed-bnb ] && export PYTHONPATH="$PYTHONPATH:/tmp/site-bnb"
if [ ! -f /tmp/q/.verified ]; then
  echo "$SHA  $GGUF" | sha256sum -c - && touch /tmp/q/.verified || return 1
fi
mkdir -p /tmp/data
# -p keeps the mtime: a fresh copy on every call would make Snakemake rerun the whole DAG
[ -f /tmp/data/strategyqa_train.json ] || cp -p .data/strategyqa_train.json /tmp/data/ || return 1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
