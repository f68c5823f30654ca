#!/usr/bin/env bash
# Runs the criterion benches, poolguard and its peers in one run. Backend benches need the
# servers: this starts them like scripts/test.sh does.
# Usage: scripts/bench.sh [bench-target ...]   (default: every bench target of poolguard-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
if [ $# -eq 0 ]; then
  cargo bench -p poolguard-bench
else
  for b in "$@"; do cargo bench -p poolguard-bench --bench "$b"; done
fi
