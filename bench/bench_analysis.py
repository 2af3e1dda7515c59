#!/usr/bin/env python3
"""Time graph, propagation and all rules over cached facts (issue: < 2 s).

    python bench/bench_analysis.py QEMU_CHECKOUT [--build-dir DIR] [--repeat 3]

Facts come from the cache (a first run fills it and is not timed); the timed
part is Program + Contexts + every rule (preview rules included), in process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from reviewer.analysis.engine import analyze
from reviewer.extract.runner import run
from reviewer.model import load_model


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("qemu")
    ap.add_argument("--build-dir")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "reviewer-bench"))
    args = ap.parse_args()
    root = os.path.abspath(args.qemu)
    paths = ["migration", "include/migration"]
    run(paths, root=root, build_dir=args.build_dir, cache_dir=args.cache_dir, progress=False)
    model = load_model()
    best_load, best_an, best_cpu = 1e9, 1e9, 1e9
    n = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = run(paths, root=root, build_dir=args.build_dir, cache_dir=args.cache_dir,
                  progress=False)
        t1 = time.perf_counter()
        c1 = time.process_time()
        result = analyze(res.facts, model, root=root, preview=True)
        t2 = time.perf_counter()
        best_cpu = min(best_cpu, time.process_time() - c1)
        best_load, best_an = min(best_load, t1 - t0), min(best_an, t2 - t1)
        n = len(result.findings)
        assert res.parsed == 0, "facts were not all cached"
    ctx = result.context
    assert ctx is not None
    print(f"{len(res.facts.tus)} TUs, {len(ctx.program.functions)} functions, "
          f"{len(ctx.contexts.steps)} (function, context, BQL) states, {n} findings")
    print(f"facts from cache   : {best_load:6.2f} s (best of {args.repeat})")
    print(f"analysis + rules   : {best_an:6.2f} s (best of {args.repeat}; target < 2 s), "
          f"cpu {best_cpu:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
