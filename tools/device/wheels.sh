# Sourced by device_env.sh and bench_bg.sh on the GPU machine: install_wheels DIR TARGET pip-installs
# the carried wheels DIR/*.whl into TARGET, once (a marker in TARGET), and does nothing when DIR was
# not carried. Call it for .whl-extra/ before .whl/: the largest wheels (transformers, pulp) travel in
# a call of their own when checkout + .whl/ would pass the 64 MiB carry limit, and pip --target
# --upgrade replaces a bin/ both have, so the later install must be the one whose scripts are kept.
install_wheels() {
  local dir=$1 target=$2 marker="$2/.installed${1#.whl}"
  [ -d "$dir" ] && [ ! -f "$marker" ] || return 0
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$target" \
    "$dir"/*.whl && touch "$marker"
}
