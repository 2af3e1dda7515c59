#!/usr/bin/env python3
"""Time `reviewer scan` of a range, cold and warm, against `clang -fsyntax-only`
over the tip's migration TUs (same flags, same jobs), in one run; and
`reviewer check` on a one-file staged change in a warm tree.

    python bench/bench_scan.py QEMU_CHECKOUT RANGE [--build-dir DIR] [--jobs N] [--repeat N]

QEMU_CHECKOUT must have the range's tip checked out (its files are the clang
baseline). The check measurement stages a comment added to the first .c file
of the range's last commit and restores it afterwards (a throwaway checkout
only: it writes the index). Not run in CI; figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from bench import bench_facts
from bench.bench_facts import clang_syntax, timed
from reviewer.extract.runner import collect


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("qemu")
    ap.add_argument("range")
    ap.add_argument("--build-dir")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--clang", default="clang-19")
    ap.add_argument("--check", action="store_true", help="also time reviewer check")
    ap.add_argument("--repeat", type=int, default=1,
                    help="interleaved rounds of clang and a cold scan: each round's ratio "
                         "and the median (the machine's load moves both)")
    args = ap.parse_args()
    root = os.path.abspath(args.qemu)
    cache = tempfile.mkdtemp(prefix="reviewer-bench-scan-")
    report = os.path.join(cache, "report.json")
    cmd = [sys.executable, "-m", "reviewer.cli", "scan", args.range, "--repo", root,
           "-j", str(args.jobs), "--cache-dir", cache, "-f", "json", "-o", report]
    if args.build_dir:
        cmd += ["--build-dir", args.build_dir]
    try:
        rounds: list[tuple[float, float]] = []
        for i in range(max(1, args.repeat)):
            if i:
                shutil.rmtree(cache, ignore_errors=True)  # cold again
                os.makedirs(cache)
            clang_t, clang_c = clang_syntax(args.clang, root, args.build_dir, args.jobs,
                                            ["migration"])
            cold_t, cold_c, cold_mem = timed(cmd)
            cold_pss = bench_facts.LAST_PSS
            rounds.append((clang_t, cold_t))
            if args.repeat > 1:
                print(f"round {i + 1}: clang {clang_t:5.2f} s, cold scan {cold_t:5.2f} s, "
                      f"{cold_t / clang_t:4.2f}x", flush=True)
        if args.repeat > 1:
            ratios = sorted(c / k for k, c in rounds)
            print(f"median of {len(ratios)} rounds: {ratios[len(ratios) // 2]:4.2f}x "
                  f"(range {ratios[0]:4.2f}x-{ratios[-1]:4.2f}x)")
        # What the cold scan parsed: every TU in scope at the base, then the
        # patches' (their report says). Each costs about what one clang
        # -fsyntax-only costs: that alone sets a floor under the ratio.
        with open(report, encoding="utf-8") as fh:
            patch_parses = sum(p.get("parsed_tus", 0) for p in json.load(fh)["patches"])
        n_clang = len(collect(["migration"], root).tus)
        n_base = n_clang + len({f for f in _touched(root, args.range)
                                if f.endswith(".c") and not f.startswith("migration/")})
        parses = n_base + patch_parses
        warm_t, _, warm_mem = timed(cmd)
        rescan_t, _, rescan_mem = timed([*cmd, "--no-cache"])
        print(f"clang -fsyntax-only, migration/ at the tip : {clang_t:6.2f} s")
        print(f"scan cold                                  : {cold_t:6.2f} s  "
              f"{cold_t / clang_t:5.2f}x  peak {cold_mem / 2**20:5.0f} MiB "
              f"(PSS {cold_pss / 2**20:5.0f} MiB)")
        print(f"  CPU (all processes)                      : {cold_c:6.2f} s  "
              f"{cold_c / clang_c:5.2f}x clang's {clang_c:.2f} s")
        print(f"  libclang parses                          : {parses:6d}    "
              f"{n_base} at the base + {patch_parses} in the patches, against clang's "
              f"{n_clang}: {parses / n_clang:4.2f}x the TUs")
        print(f"scan warm (same range again)               : {warm_t:6.2f} s  "
              f"{warm_t / clang_t:5.2f}x  peak {warm_mem / 2**20:5.0f} MiB")
        print(f"scan --no-cache (facts cached, re-analysed): {rescan_t:6.2f} s  "
              f"{rescan_t / clang_t:5.2f}x  peak {rescan_mem / 2**20:5.0f} MiB")
        if args.check:
            files = subprocess.run(["git", "-C", root, "diff-tree", "-r", "--name-only",
                                    "--no-commit-id", "HEAD"], capture_output=True, text=True,
                                   check=True).stdout.split()
            target = next(f for f in files if f.endswith(".c"))
            path = os.path.join(root, target)
            with open(path, "rb") as fh:
                saved = fh.read()
            try:
                with open(path, "ab") as fh:
                    fh.write(b"\n/* bench */\n")
                subprocess.run(["git", "-C", root, "add", target], check=True)
                check = [sys.executable, "-m", "reviewer.cli", "check", "--repo", root,
                         "--cache-dir", cache]
                if args.build_dir:
                    check += ["--build-dir", args.build_dir]
                timed(check)  # fills the cache for both versions
                best = min(timed(check)[0] for _ in range(3))
                print(f"check, one staged file, warm (best of 3)   : {best:6.2f} s")
            finally:
                subprocess.run(["git", "-C", root, "reset", "-q", target], check=True)
                with open(path, "wb") as fh:
                    fh.write(saved)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


def _touched(root: str, rng: str) -> list[str]:
    out = subprocess.run(["git", "-C", root, "log", "--format=", "--name-only", rng],
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split() if os.path.exists(os.path.join(root, f))]


if __name__ == "__main__":
    sys.exit(main())
