#!/usr/bin/env python3
"""Time `reviewer facts migration/` cold and warm against `clang -fsyntax-only`.

    python bench/bench_facts.py QEMU_CHECKOUT [--build-dir DIR] [--jobs N] [--clang clang-19]
                                              [--repeat N]

Same TUs, same flags (reviewer's own, printed by the flag planner), same number
of parallel jobs, all in one run. Prints wall times, the ratios, and the peak
resident memory of each reviewer run (the whole process tree, sampled), and
the CPU time (user + system) of each measured process tree, which other load
on the machine disturbs much less than wall time. With
--repeat N the three measurements are taken N times, interleaved, each cold run
with a fresh cache, and the best time of each is kept: the machine is shared,
and the minimum is the figure least disturbed by other load. Not run in CI;
figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from reviewer.extract.flags import plan_flags
from reviewer.extract.runner import collect


def _tree_mem(pid: int, pss_too: bool = True) -> tuple[int, int]:
    """(RSS, PSS) summed over the process tree. RSS counts a page shared by
    forked processes once in each; PSS divides it among them (what the tree
    costs the machine). PSS is read only when asked: reading smaps_rollup walks
    the process's page tables and takes its memory-map lock, which slows a
    large process down if done every 50 ms."""
    rss = pss = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                rss += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            if pss_too:
                with open(f"/proc/{p}/smaps_rollup") as fh:
                    for line in fh:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1]) * 1024
                            break
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return rss, pss


# The peak PSS of the last timed() command (its peak RSS is returned).
LAST_PSS = 0


def _children_cpu() -> float:
    """CPU time of all waited-for descendants so far (clang processes, reviewer
    and its workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str]) -> tuple[float, float, int]:
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = peak_pss = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_pss
        n = 0
        while not done.is_set():
            rss, pss = _tree_mem(proc.pid, pss_too=n % 20 == 0)  # PSS once a second
            peak, peak_pss = max(peak, rss), max(peak_pss, pss)
            n += 1
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    done.set()
    th.join()
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err.decode(errors='replace')}")
    global LAST_PSS
    LAST_PSS = peak_pss
    return time.perf_counter() - start, _children_cpu() - cpu, peak


def clang_syntax(clang: str, root: str, build_dir: str | None, jobs: int,
                 paths: list[str]) -> tuple[float, float]:
    plan = plan_flags(root, build_dir)
    tus = collect(paths, root).tus

    def one(tu: str) -> None:
        args = [a for a in plan.args_for(tu) if not a.startswith("-working-directory=")]
        cwd = plan.entries[tu].directory if tu in plan.entries else root
        subprocess.run([clang, "-fsyntax-only", "-w", *args, tu], cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    cpu = _children_cpu()
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, tus))
    return time.perf_counter() - start, _children_cpu() - cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("qemu")
    ap.add_argument("--build-dir")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--clang", default="clang-19")
    ap.add_argument("--paths", nargs="*", default=["migration"])
    ap.add_argument("--repeat", type=int, default=1, help="take the best of N runs")
    args = ap.parse_args()
    root = os.path.abspath(args.qemu)
    if not shutil.which(args.clang):
        sys.exit(f"{args.clang} not found (apt-get install clang-19, or pass --clang)")
    n = len(collect(args.paths, root).tus)
    inf = float("inf")
    clang_t = cold_t = warm_t = clang_c = cold_c = warm_c = inf
    cold_mem = warm_mem = 0
    for _ in range(max(1, args.repeat)):
        cache = tempfile.mkdtemp(prefix="reviewer-bench-")
        base = [sys.executable, "-m", "reviewer.cli", "facts", "--root", root,
                "-j", str(args.jobs), "--cache-dir", cache, "-f", "json", *args.paths]
        if args.build_dir:
            base += ["--build-dir", args.build_dir]
        try:
            t, c = clang_syntax(args.clang, root, args.build_dir, args.jobs, args.paths)
            clang_t, clang_c = min(clang_t, t), min(clang_c, c)
            t, c, mem = timed(base)
            cold_t, cold_c, cold_mem = min(cold_t, t), min(cold_c, c), max(cold_mem, mem)
            t, c, mem = timed(base)
            warm_t, warm_c, warm_mem = min(warm_t, t), min(warm_c, c), max(warm_mem, mem)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    mode = "build" if args.build_dir else "no-build"
    print(f"{n} TUs, {mode} mode, {args.jobs} jobs, best of {max(1, args.repeat)}")
    print(f"clang -fsyntax-only : {clang_t:6.2f} s                        "
          f"cpu {clang_c:6.2f} s")
    print(f"reviewer cold       : {cold_t:6.2f} s  ratio {cold_t / clang_t:4.2f}x  "
          f"peak {cold_mem / 2**20:6.0f} MiB  cpu {cold_c:6.2f} s  ratio {cold_c / clang_c:4.2f}x")
    print(f"reviewer warm       : {warm_t:6.2f} s  ratio {warm_t / clang_t:4.2f}x  "
          f"peak {warm_mem / 2**20:6.0f} MiB  cpu {warm_c:6.2f} s  ratio {warm_c / clang_c:4.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
