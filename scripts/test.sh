#!/usr/bin/env bash
# The one command that passes all tests on a fresh machine: starts (or installs) PostgreSQL
# and Redis, then runs the checks in tiers, cheapest first. Each tier prints
# `== tier N/M: NAME` and its time; a failure ends the run with `== FAILED: tier N/M: NAME`.
#
#   scripts/test.sh               every tier
#   scripts/test.sh fmt clippy    only the named tiers (same names as below), in this order
set -euo pipefail
cd "$(dirname "$0")/.."

# Services for the tests that talk to real servers.
tier_services() {
  bash scripts/services.sh
}

tier_fmt() {
  cargo fmt --all -- --check
}

tier_clippy() {
  cargo clippy --workspace --all-targets --all-features -- -D warnings
}

tier_docs() {
  # Broken intra-doc links fail the build; the second run, with default features, catches links
  # to items that exist only with a feature on.
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --document-private-items
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items
  # The README speaks to users: no tracker numbers, no source file names.
  # (Hidden doctest lines, `# ...` inside a code block, are code, not prose.)
  if grep -nE '\bissue [0-9]|[A-Za-z_]\.rs\b' README.md crates/*/README.md | grep -vE '^[^:]+:[0-9]+:\s*# '; then
    echo "a README names an issue or a source file (above); say what it means for users" >&2
    return 1
  fi
}

# The core's engines build on their own (`object` and `reclaim` without tokio), and every
# published crate's `rust-version` covers what its locked dependencies need.
tier_features() {
  local f
  for f in object reclaim tokio conn bytes metrics; do
    echo "-- poolguard --no-default-features --features $f"
    cargo clippy -p poolguard --lib --no-default-features --features "$f" -- -D warnings
  done
  if cargo tree -p poolguard --no-default-features --features object,reclaim -e normal \
    | grep -E '^\W*tokio v'; then
    echo "poolguard's object and reclaim features pull in tokio (above)" >&2
    return 1
  fi
  python3 scripts/msrv.py --print
}

# What `cargo publish` would upload, built from the packaged sources alone (`--allow-dirty`: a
# local run checks the working tree as it is): proves that no
# published crate needs an unpublished one (or a file outside its directory).
tier_package() {
  cargo package --workspace --exclude poolguard-testkit --exclude poolguard-bench --locked --allow-dirty
  # The packaged core must still build with only the object pool.
  cargo publish --dry-run -p poolguard --locked --allow-dirty --no-default-features --features object
}

tier_loom() {
  bash scripts/loom.sh
}

tier_doctests() {
  cargo test --workspace --all-features --doc
}

# The real PostgreSQL restart restarts the shared server, so it runs alone, before the main
# suite. It is #[ignore]d there; it fails (never skips) if it cannot run.
tier_restart() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run -p poolguard-postgres --all-features --test restart --run-ignored only
  else
    cargo test -p poolguard-postgres --all-features --test restart -- --ignored
  fi
}

tier_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-features --no-fail-fast
  else
    cargo test --workspace --all-features --no-fail-fast
  fi
}

# The mixed fault soak (restarts, freezes, kills, aborts, panics, cancellations) on its own
# private PostgreSQL and Redis servers, last, so its CPU load does not disturb the timing of
# the tests above. Fails on a hung request, a dirty handover, a leak or a pool above max_size.
tier_soak() {
  SOAK_BUILD="build --workspace --all-features --bins" bash scripts/soak.sh 1
}

TIERS=(services fmt clippy docs features package loom doctests restart tests soak)

if [ $# -gt 0 ]; then
  for want in "$@"; do
    if ! declare -F "tier_$want" >/dev/null; then
      echo "unknown tier '$want'; the tiers are: ${TIERS[*]}" >&2
      exit 2
    fi
  done
  run=()
  for t in "${TIERS[@]}"; do
    for want in "$@"; do [ "$t" = "$want" ] && run+=("$t"); done
  done
else
  run=("${TIERS[@]}")
fi

current=""
trap 'rc=$?; if [ $rc -ne 0 ] && [ -n "$current" ]; then echo "== FAILED: tier $current (exit $rc)" >&2; fi' EXIT
total=${#run[@]}
for i in "${!run[@]}"; do
  current="$((i + 1))/$total: ${run[$i]}"
  echo "== tier $current"
  start=$SECONDS
  "tier_${run[$i]}"
  echo "== tier $current passed in $((SECONDS - start)) s"
done
current=""
echo "== all $total tiers passed"
