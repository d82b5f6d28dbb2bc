# Sourced by device_env.sh and bench_bg.sh on the GPU machine: install_wheels DIR TARGET pip-installs
# the carried wheels DIR/*.whl into TARGET, once (a marker in TARGET), and does nothing when DIR was
# not carried. Call it for .whl-extra/ before .whl/: the largest wheels (transformers, pulp) travel in
# a call of their own when checkout + .whl/ would pass the 64 MiB carry limit, and pip --target
# --upgrade replaces a bin/ both have, so the later install must be the one whose scripts are kept.
# A wheel carried in two halves (prepare_carry.sh: DIR/NAME.whl.part0 and DIR2/NAME.whl.part1, two calls)
# is joined first. A carried folder is gone in the next call, so the call that carries DIR/ runs
# `stash_half DIR` (copies the first half to $WHEEL_HALVES, outside the checkout), and the call that carries
# DIR2/ runs install_wheels DIR, which finds the first half there.
WHEEL_HALVES=${WHEEL_HALVES:-/tmp/wheel-halves}
stash_half() {
  [ -d "$1" ] || { echo "stash_half: $1/ was not carried in this call"; return 1; }
  mkdir -p "$WHEEL_HALVES/$1" && cp "$1"/*.whl.part0 "$WHEEL_HALVES/$1/"
}
install_wheels() {
  local dir=$1 target=$2 marker="$2/.installed${1#.whl}" part half
  [ -d "$dir" ] || [ ! -d "$WHEEL_HALVES/$1" ] || dir=$WHEEL_HALVES/$1
  [ -d "$dir" ] && [ ! -f "$marker" ] || return 0
  for part in "$dir"/*.whl.part0; do
    [ -e "$part" ] || continue
    half="${1}2/$(basename "${part%0}")1"
    [ -f "$half" ] || { echo "install_wheels: carry ${1}2/ too (the second half of $part)"; return 1; }
    cat "$part" "$half" > "${part%.part0}" || return 1
  done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$target" \
    "$dir"/*.whl && touch "$marker"
}
