#!/usr/bin/env python3
"""Prints criterion's latest medians as Markdown tables, one per benchmark group.

Usage: scripts/bench_summary.py [target/criterion] [group-prefix ...]
Rows are the benchmarked functions (poolguard and its peers), columns the parameter (threads,
tasks, ...), cells the median time per iteration and, in brackets, the ratio to the row named
`poolguard` in the same column (above 1.00 = slower than poolguard).
"""
import json
import os
import sys


def fmt_ns(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    prefixes = sys.argv[2:]
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
