#!/usr/bin/env bash
# The one command that passes all tests on a fresh machine: starts (or installs) PostgreSQL
# and Redis, then runs format check, clippy with -D warnings, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== doc tests"
cargo test --workspace --all-features --doc
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast
fi
