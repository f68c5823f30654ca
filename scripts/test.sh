#!/usr/bin/env bash
# The one command that passes all tests on a fresh machine: starts (or installs) PostgreSQL
# and Redis, then runs format check, clippy with -D warnings, the docs with -D warnings, and
# every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== docs (rustdoc -D warnings, private items)"
# Broken intra-doc links fail the build; the second run, with default features, catches links
# to items that exist only with a feature on (what docs.rs shows by default).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --document-private-items
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items
# The README speaks to users: no tracker numbers, no source file names.
if grep -nE '\bissue [0-9]|[A-Za-z_]\.rs\b' README.md; then
  echo "README.md names an issue or a source file (above); say what it means for users" >&2
  exit 1
fi
echo "== loom model checks (scripts/loom.sh)"
bash scripts/loom.sh
echo "== doc tests"
cargo test --workspace --all-features --doc
# The real PostgreSQL restart restarts the shared server, so it runs alone, before the main
# suite. It is #[ignore]d there; it fails (never skips) if it cannot run.
echo "== PostgreSQL restart under load (alone)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p poolguard-postgres --all-features --test restart --run-ignored only
else
  cargo test -p poolguard-postgres --all-features --test restart -- --ignored
fi
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast
fi
# The mixed fault soak (restarts, freezes, kills, aborts, panics, cancellations) on its own
# private PostgreSQL and Redis servers, last, so its CPU load does not disturb the timing of
# the tests above. Fails on a hung request, a dirty handover, a leak or a pool above max_size.
echo "== fault soak, 60 s (scripts/soak.sh)"
SOAK_BUILD="test --workspace --all-features --no-run" bash scripts/soak.sh 1
