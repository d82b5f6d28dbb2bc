# Sourced by device_env.sh and bench_bg.sh on the GPU machine: install_wheels DIR TARGET pip-installs
# the carried wheels DIR/*.whl into TARGET, once (a marker in TARGET), and does nothing when DIR was
# not carried. Call it for .whl-extra/ before .whl/: the largest wheels (transformers, pulp) travel in
# a call of their own when checkout + .whl/ would pass the 64 MiB carry limit, and pip --target
# --upgrade replaces a bin/ both have, so the later install must be the one whose scripts are kept.
# A wheel carried in two halves (prepare_carry.sh: DIR/NAME.whl.part0 and DIR2/NAME.whl.part1, two calls)
# is joined first.
install_wheels() {
  local dir=$1 target=$2 marker="$2/.installed${1#.whl}" part
  [ -d "$dir" ] && [ ! -f "$marker" ] || return 0
  for part in "$dir"/*.whl.part0; do
    [ -e "$part" ] || continue
    [ -f "${dir}2/$(basename "${part%0}")1" ] || { echo "install_wheels: carry ${dir}2/ too (the second half of $part)"; return 1; }
    cat "$part" "${dir}2/$(basename "${part%0}")1" > "${part%.part0}" || return 1
  done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$target" \
    "$dir"/*.whl && touch "$marker"
}
