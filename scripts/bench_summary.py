#!/usr/bin/env python3
"""Prints criterion's latest medians as Markdown tables, one per benchmark group.

Usage: scripts/bench_summary.py [target/criterion] [group-prefix ...]
Rows are the benchmarked functions (poolguard and its peers), columns the parameter (threads,
tasks, ...), cells the median time per iteration and, in brackets, the ratio to the row named
`poolguard` in the same column (above 1.00 = slower than poolguard).

Cross-language mode (used by scripts/compare.sh):
  scripts/bench_summary.py --emit target/criterion GROUP...   one line per benchmark:
      "rust<TAB>group/function<TAB>parameter<TAB>median ns"
  scripts/bench_summary.py --compare RESULTS                   RESULTS holds such lines from
      every harness and round ("harness<TAB>op<TAB>threads<TAB>ns"); prints one table per
      operation, the median over rounds per cell and each peer's ratio to poolguard.
"""
import json
import os
import sys


def fmt_ns(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def medians(root, prefixes):
    """{group: {function: {parameter: median ns}}} from criterion's latest estimates."""
    groups = {}
    for dirpath, _dirs, files in os.walk(root):
        if "estimates.json" not in files or not dirpath.endswith(os.sep + "new"):
            continue
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        group = bench["group_id"]
        if prefixes and not any(group.startswith(p) for p in prefixes):
            continue
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        func = bench.get("function_id") or "-"
        param = bench.get("value_str") or "-"
        groups.setdefault(group, {}).setdefault(func, {})[param] = est["median"]["point_estimate"]
    return groups


def emit(root, groups):
    for group, rows in sorted(medians(root, groups).items()):
        for func, cells in sorted(rows.items()):
            for param, ns in sorted(cells.items()):
                if func == "-":
                    # BenchmarkId::from_parameter(name): the function is the parameter
                    print(f"rust\t{group}/{param}\t-\t{ns:.2f}")
                else:
                    print(f"rust\t{group}/{func}\t{param}\t{ns:.2f}")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# The cross-language table: (title, [(column, harness, op)]); the first column is poolguard.
COMPARE = [
    (
        "object round trip (4 KiB buffer: get, append one byte, return), ns per op",
        [
            ("poolguard", "rust", "object/round_trip/poolguard"),
            ("Go sync.Pool", "go", "sync.Pool"),
            ("glibc malloc+free", "rust", "object/round_trip/alloc-system"),
            ("thread-local boxed free list (floor)", "rust", "object/round_trip/floor-thread-local-box"),
        ],
    ),
    (
        "connection checkout cycle (no-op connection, pool 10: get + return), ns per cycle",
        [
            ("poolguard", "rust", "conn/w2s10t{p}/poolguard"),
            ("HikariCP 2.7.9", "java", "hikari"),
            ("r2d2 (threads)", "rust", "conn/w2s10t{p}/r2d2"),
        ],
    ),
]


def compare(path):
    runs = {}
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4:
            continue
        harness, op, param, ns = parts
        # criterion's conn groups carry the task count in the group name, parameter "-"
        if op.startswith("conn/w2s10t") and param == "-":
            head, func = op.rsplit("/", 1)
            param = head[len("conn/w2s10t"):]
        runs.setdefault((harness, op, param), []).append(float(ns))
    rounds = max((len(v) for v in runs.values()), default=0)
    for title, cols in COMPARE:
        params = sorted(
            {
                p
                for (h, op, p) in runs
                for (_c, ch, cop) in cols
                if h == ch and op == cop.replace("t{p}", "t" + p)
            },
            key=int,
        )
        if not params:
            continue
        print(f"\n**{title}**; median of {rounds} interleaved rounds; (ratio) = peer / poolguard, above 1.00 = poolguard faster\n")
        print("| threads / callers | " + " | ".join(c for c, _h, _o in cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for p in params:
            cells = []
            base = None
            for i, (_c, h, op) in enumerate(cols):
                v = runs.get((h, op.replace("{p}", p), p))
                if v is None:
                    cells.append("-")
                    continue
                m = median(v)
                if i == 0:
                    base = m
                    cells.append(f"{m:.1f}")
                elif base:
                    cells.append(f"{m:.1f} ({m / base:.2f})")
                else:
                    cells.append(f"{m:.1f}")
            print(f"| {p} | " + " | ".join(cells) + " |")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--emit":
        return emit(sys.argv[2], sys.argv[3:])
    if len(sys.argv) == 3 and sys.argv[1] == "--compare":
        return compare(sys.argv[2])
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    prefixes = sys.argv[2:]
    groups = medians(root, prefixes)
    for group in sorted(groups):
        rows = groups[group]
        params = sorted({p for r in rows.values() for p in r}, key=lambda p: (len(p), p))
        base = rows.get("poolguard", {})
        print(f"\n**{group}** (median per iteration; ratio to poolguard)\n")
        print("| | " + " | ".join(params) + " |")
        print("|---" * (len(params) + 1) + "|")
        for func in sorted(rows, key=lambda f: (f != "poolguard", f)):
            cells = []
            for p in params:
                v = rows[func].get(p)
                if v is None:
                    cells.append("")
                elif func != "poolguard" and p in base:
                    cells.append(f"{fmt_ns(v)} ({v / base[p]:.2f})")
                else:
                    cells.append(fmt_ns(v))
            print(f"| {func} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
