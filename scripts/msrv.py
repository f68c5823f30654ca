#!/usr/bin/env python3
"""Checks each published crate's `rust-version` against its locked dependencies.

For every workspace member that is published, walks its normal and build dependencies in the
lock file's resolve for this host (dev-dependencies do not reach users; a `cfg(...)` such as
the loom one is off) and takes the highest
`rust-version` any of them declares. The crate's own `rust-version` must be at least that:
otherwise a user on the declared toolchain cannot build it. `--print` lists the figures.
"""
import json
import subprocess
import sys


def ver(v):
    return tuple(int(x) for x in v.split("."))


def host():
    out = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout
    return next(l.split()[1] for l in out.splitlines() if l.startswith("host:"))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", host()],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    pkgs = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    bad = []
    for mid in meta["workspace_members"]:
        pkg = pkgs[mid]
        if pkg.get("publish") == []:
            continue
        seen, stack, need, who = set(), [mid], (0,), None
        while stack:
            nid = stack.pop()
            for dep in nodes[nid]["deps"]:
                kinds = {k["kind"] for k in dep["dep_kinds"]}
                if kinds <= {"dev"} or dep["pkg"] in seen:
                    continue
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
                rv = pkgs[dep["pkg"]].get("rust_version")
                if rv and ver(rv) > need:
                    need, who = ver(rv), pkgs[dep["pkg"]]
        declared = pkg.get("rust_version") or "none"
        needed = ".".join(map(str, need))
        why = f"{who['name']} {who['version']}" if who else "-"
        if "--print" in sys.argv:
            print(f"{pkg['name']:20} rust-version {declared:6} needed {needed:6} ({why})")
        if declared == "none" or ver(declared) < need:
            bad.append(f"{pkg['name']}: rust-version {declared}, but {why} needs {needed}")
    if bad:
        print("rust-version is lower than the locked dependencies need:", file=sys.stderr)
        for b in bad:
            print("  " + b, file=sys.stderr)
        print("fix: raise `rust-version` in that crate's Cargo.toml", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
