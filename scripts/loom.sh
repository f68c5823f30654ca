#!/usr/bin/env bash
# Model-checks poolguard's concurrent structures with loom (every interleaving, bounded).
# Runs only the `#[cfg(poolguard_loom)]` tests (their names contain `loom`). Also run by scripts/test.sh.
# Usage: scripts/loom.sh [test-name-filter]   (default filter: loom)
# Builds into $CARGO_TARGET_DIR/loom (target/loom by default): its own RUSTFLAGS need their own dir.
set -euo pipefail
cd "$(dirname "$0")/.."
# A crate-specific cfg, not `--cfg loom`: tokio (used by the dev-dependencies) reacts to
# `loom` by removing its networking, which would break the build of the test harness.
export RUSTFLAGS="--cfg poolguard_loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" cargo test -p poolguard --lib -- "${1:-loom}" --test-threads=1
