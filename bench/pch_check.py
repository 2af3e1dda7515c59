#!/usr/bin/env python3
"""Check, on a real tree, that TUs parsed with the precompiled prefix
(reviewer.extract.pch) give exactly the facts of a plain parse.

    python -m bench.pch_check QEMU_CHECKOUT [--build-dir DIR] [--paths migration ...]

Extracts the paths twice into fresh caches, REVIEWER_PCH=0 then 1, and
compares each TU's facts byte for byte (pickled), and the problems. Prints
how many TUs used a PCH, both times, and every difference. Not run in CI (it
needs a QEMU checkout).
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import tempfile
import time

from reviewer.extract.runner import RunResult, run


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("qemu")
    ap.add_argument("--build-dir")
    ap.add_argument("--paths", nargs="*", default=["migration"])
    ap.add_argument("--scope", nargs="*", default=["migration", "include/migration"])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    root = os.path.abspath(args.qemu)
    results: list[RunResult] = []
    for flag in ("0", "1"):
        os.environ["REVIEWER_PCH"] = flag
        cache = tempfile.mkdtemp(prefix="reviewer-pch-check-")
        try:
            t = time.perf_counter()
            results.append(run(args.paths, root=root, build_dir=args.build_dir,
                               cache_dir=cache, jobs=args.jobs, progress=False,
                               scope=tuple(args.scope)))
            print(f"REVIEWER_PCH={flag}: {results[-1].parsed} TUs parsed, "
                  f"{results[-1].precompiled} with a PCH, {time.perf_counter() - t:.1f} s")
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    plain, pch = results
    differ = [a.file for a, b in zip(plain.facts.tus, pch.facts.tus, strict=True)
              if pickle.dumps(a) != pickle.dumps(b)]
    for f in differ:
        print(f"DIFFERENT: {f}")
    if plain.problems != pch.problems:
        print("DIFFERENT problems:", sorted(set(plain.problems) ^ set(pch.problems)))
    print(f"{len(plain.facts.tus)} TUs, {len(differ)} with different facts")
    return 1 if differ or plain.problems != pch.problems else 0


if __name__ == "__main__":
    sys.exit(main())
