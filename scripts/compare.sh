#!/usr/bin/env bash
# Cross-language comparison in one window: Go's sync.Pool, HikariCP (stub connection) and the
# Rust criterion benches for the same operations, interleaved round by round, then one table
# of ratios (median over rounds). Not part of CI: run it by hand on a machine you can keep quiet.
#
#   scripts/compare.sh [ROUNDS]          (default 3 rounds, about 2 minutes each)
#
# Operations (the same definition in every harness):
# * object round trip: take a 4 KiB byte buffer from the pool, append one byte, give it back
#   (reset to length 0). Rust `object/round_trip` (1, 2, 8 threads); Go BenchmarkPoolSingle
#   (1) and BenchmarkPoolParallel at GOMAXPROCS 2 and 8 (`-cpu`), scripts/compare/go/.
#   ns per op = wall time over all threads' operations / their count.
# * connection checkout cycle: get a connection from a pool of 10 whose connections do
#   nothing, and give it back, in a loop, at 1, 2, 16 and 64 concurrent callers. Rust
#   `conn/w2s10t{N}` (tokio tasks on 2 workers; r2d2 on OS threads); HikariCP 2.7.9
#   getConnection() + close() on N threads, scripts/compare/java/. ns per cycle = wall time /
#   cycles over all callers.
#
# Needs Debian's golang-go, default-jdk-headless and libhikaricp-java: installed with apt-get
# when missing (run as root); the script stops, naming the package, if one cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rounds=${1:-3}
out=$(mktemp -d /tmp/poolguard-compare.XXXXXX)
trap 'rm -rf "$out"' EXIT

need() { # package command
  if command -v "$2" >/dev/null 2>&1 && { [ "$1" != libhikaricp-java ] || [ -e /usr/share/java/HikariCP.jar ]; }; then
    return
  fi
  if ! apt-cache policy "$1" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
    # Package lists may be missing or stale on a fresh machine: refresh them once.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  fi
  if ! apt-cache policy "$1" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
    echo "compare.sh: Debian package $1 is not available here (apt-cache policy $1 shows no candidate); install it another way or add a repository that has it" >&2
    exit 1
  fi
  echo "installing $1" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >"$out/apt.log" 2>&1; then
    echo "compare.sh: apt-get install $1 failed (needs root and network); last lines:" >&2
    tail -5 "$out/apt.log" >&2
    exit 1
  fi
}
need golang-go go
need default-jdk-headless javac
need libhikaricp-java true
for j in HikariCP slf4j-api slf4j-nop; do
  [ -e "/usr/share/java/$j.jar" ] || { echo "compare.sh: /usr/share/java/$j.jar missing (package libhikaricp-java or libslf4j-java)" >&2; exit 1; }
done
jcp=/usr/share/java/HikariCP.jar:/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-nop.jar

echo "building (outside the measured window)" >&2
(cd scripts/compare/go && GOFLAGS=-mod=mod go test -c -o "$out/syncpool.test" .)
"$out/syncpool.test" -test.run . >/dev/null # the harness's own check of the operation
mkdir -p "$out/java"
javac -d "$out/java" -cp "$jcp" scripts/compare/java/HikariLoop.java
cargo bench -q -j 2 -p poolguard-bench --bench object_pool --bench conn_pool --no-run 2>/dev/null
crit=${CARGO_TARGET_DIR:-$root/target}/criterion

obj_filter='^object/round_trip/(poolguard|alloc-system|floor-thread-local-box)/[128]$'
conn_filter='^conn/w2s10t(1|2|16|64)/(poolguard|r2d2)$'
res="$out/results.tsv"
echo "window: $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds: go" >&2
  "$out/syncpool.test" -test.run '^$' -test.bench 'BenchmarkPoolSingle$' -test.cpu 1 -test.benchtime 1s \
    | awk '/^BenchmarkPoolSingle/ {print "go\tsync.Pool\t1\t" $3}' >>"$res"
  "$out/syncpool.test" -test.run '^$' -test.bench 'BenchmarkPoolParallel$' -test.cpu 2,8 -test.benchtime 1s \
    | awk '/^BenchmarkPoolParallel-/ {n = $1; sub(/.*-/, "", n); print "go\tsync.Pool\t" n "\t" $3}' >>"$res"
  echo "round $r/$rounds: java" >&2
  java -Dwarmup.ms=1500 -Dtimed.ms=2000 -cp "$jcp:$out/java" HikariLoop 1 2 16 64 \
    | awk '$1 == "hikari" {print "java\thikari\t" $2 "\t" $3}' >>"$res"
  echo "round $r/$rounds: rust" >&2
  cargo bench -q -j 2 -p poolguard-bench --bench object_pool -- --noplot "$obj_filter" >"$out/rust.log" 2>&1 \
    || { tail -20 "$out/rust.log" >&2; exit 1; }
  POOLGUARD_BENCH_NO_REPORT=1 cargo bench -q -j 2 -p poolguard-bench --bench conn_pool -- --noplot "$conn_filter" >"$out/rust.log" 2>&1 \
    || { tail -20 "$out/rust.log" >&2; exit 1; }
  python3 scripts/bench_summary.py --emit "$crit" object/round_trip conn/w2s10t \
    | grep -E "^rust	(object/round_trip/(poolguard|alloc-system|floor-thread-local-box)	[128]|conn/w2s10t(1|2|16|64)/(poolguard|r2d2))	" >>"$res"
done
echo "window end: $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 scripts/bench_summary.py --compare "$res"
