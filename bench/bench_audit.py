#!/usr/bin/env python3
"""Time `reviewer audit --thread mig/dst/main` over the whole tree, cold and
warm, against `clang -fsyntax-only` over the same TUs with the same flags and
jobs, in one run; and its peak memory.

    python -m bench.bench_audit QEMU_CHECKOUT --build-dir DIR [--jobs N] [--cache-dir D]

--cache-dir: reuse a cache (then "cold" is not cold: pass a fresh directory,
the default, for the cold figure). Not run in CI; figures go to
docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from bench import bench_facts
from bench.bench_facts import clang_syntax, timed
from reviewer.audit import tree_paths
from reviewer.extract.flags import plan_flags


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("qemu")
    ap.add_argument("--build-dir")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--clang", default="clang-19")
    ap.add_argument("--cache-dir")
    ap.add_argument("--skip-clang", action="store_true")
    args = ap.parse_args()
    root = os.path.abspath(args.qemu)
    plan = plan_flags(root, args.build_dir)
    paths = tree_paths(root, plan.entries)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="reviewer-bench-audit-")
    cmd = [sys.executable, "-m", "reviewer.cli", "audit", "--root", root, "--thread",
           "mig/dst/main", "-j", str(args.jobs), "--cache-dir", cache, "-f", "json",
           "-o", os.devnull]
    if args.build_dir:
        cmd += ["--build-dir", args.build_dir]
    try:
        clang_t = 0.0
        if not args.skip_clang:
            clang_t, _ = clang_syntax(args.clang, root, args.build_dir, args.jobs, paths)
        cold_t, _, cold_mem = timed(cmd)
        cold_pss = bench_facts.LAST_PSS
        warm_t, _, warm_mem = timed(cmd)
        print(f"{len(paths)} TUs, {args.jobs} jobs")
        if clang_t:
            print(f"clang -fsyntax-only : {clang_t:7.1f} s")
        ratio = f"{cold_t / clang_t:5.2f}x" if clang_t else "  n/a"
        print(f"audit cold          : {cold_t:7.1f} s  {ratio}  peak {cold_mem / 2**20:6.0f} MiB "
              f"(PSS {cold_pss / 2**20:6.0f} MiB)")
        print(f"audit warm          : {warm_t:7.1f} s  peak {warm_mem / 2**20:6.0f} MiB")
    finally:
        if not args.cache_dir:
            shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
