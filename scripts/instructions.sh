#!/usr/bin/env bash
# Instructions per operation (valgrind's callgrind: independent of machine load) for the object
# pool's round trip and the connection pool's checkout cycle, at one or more git revisions.
#
#   scripts/instructions.sh                 the working tree
#   scripts/instructions.sh 87d73ab main    each revision, side by side
#
# Per-op cost = (Ir(2N) - Ir(N)) / N, so start-up and pool construction cancel out.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install valgrind" >&2; exit 1; }
n=${INSTR_N:-20000}
work=$(mktemp -d /tmp/poolguard-instr.XXXXXX)
trap 'for w in "$work"/wt-*; do [ -d "$w" ] && git -C "$root" worktree remove --force "$w"; done; rm -rf "$work"' EXIT
revs=("$@")
[ ${#revs[@]} -eq 0 ] && revs=(WORKTREE)

ir() { # binary what n -> total instructions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" "$2" "$3" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

printf '%-12s %14s %14s %14s\n' revision object_ir/op floor_ir/op conn_ir/op
for rev in "${revs[@]}"; do
  if [ "$rev" = WORKTREE ]; then src=$root; else
    src="$work/wt-$rev"; git worktree add -q --detach "$src" "$rev"; fi
  proj="$work/proj-$rev"; mkdir -p "$proj/src"
  cp scripts/instructions/main.rs "$proj/src/main.rs"
  cp "$src/Cargo.lock" "$proj/Cargo.lock"
  cat > "$proj/Cargo.toml" <<TOML
[package]
name = "instr"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
poolguard = { path = "$src/crates/poolguard" }
tokio = { version = "1", features = ["rt", "time"] }
[profile.release]
debug = 1
[workspace]
TOML
  CARGO_TARGET_DIR="$work/target" cargo build -q --release --manifest-path "$proj/Cargo.toml"
  bin="$work/target/release/instr"
  row=()
  for what in object floor conn; do
    a=$(ir "$bin" "$what" "$n"); b=$(ir "$bin" "$what" $((2 * n)))
    row+=("$(python3 -c "print(f'{($b - $a) / $n:.1f}')")")
  done
  printf '%-12s %14s %14s %14s\n' "$rev" "${row[0]}" "${row[1]}" "${row[2]}"
  rm -f "$bin"
done
