#!/usr/bin/env python3
"""Check, on a real series, that facts carried across header changes, or
spliced with a changed header's new functions (reviewer.extract.delta), equal
the facts of a fresh parse.

    python -m bench.carry_check QEMU_CHECKOUT RANGE [--build-dir DIR] [--paths migration ...]

Walks the range commit by commit in a scratch tree (outside the checkout),
extracts each version with the previous version's changed files as `previous`
(as `reviewer scan` does), then parses every TU whose facts were carried again
without the cache and compares. Prints, per commit, TUs parsed / carried and
any difference. Not run in CI (it needs a QEMU checkout).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from reviewer.extract.flags import plan_flags
from reviewer.extract.runner import run
from reviewer.scan import _materialise, previous_of
from reviewer.vcs.git import Repository


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("qemu")
    ap.add_argument("range")
    ap.add_argument("--build-dir")
    ap.add_argument("--paths", nargs="*", default=["migration", "include/migration"])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--explain", action="store_true", help="show the first difference")
    args = ap.parse_args()
    repo = Repository(args.qemu)
    base, commits = repo.commits(args.range)
    work = tempfile.mkdtemp(prefix="reviewer-carry-")
    tree = os.path.join(work, "tree")
    cache = os.path.join(work, "cache")
    bad = 0
    try:
        repo.archive_to(base, tree)
        prev = base
        scope = tuple(args.paths)
        plan = plan_flags(tree, args.build_dir, None, cache, source_root=repo.root)
        run(list(args.paths), root=tree, plan=plan, cache_dir=cache, jobs=args.jobs,
            progress=False, scope=scope)
        total_parsed = total_carried = total_spliced = 0
        for c in commits:
            previous = previous_of(repo, tree, prev, _materialise(repo, tree, prev, c.sha))
            prev = c.sha
            plan = plan_flags(tree, args.build_dir, None, cache, source_root=repo.root)
            previous = {**plan.replaced, **previous}  # as reviewer.scan._extract does
            got = run(list(args.paths), root=tree, plan=plan, cache_dir=cache, jobs=args.jobs,
                      progress=False, previous=previous, scope=scope)
            fresh = run(list(args.paths), root=tree, plan=plan, cache_dir=cache,
                        use_cache=False, jobs=args.jobs, progress=False, scope=scope)
            diffs = [a.file for a, b in zip(got.facts.tus, fresh.facts.tus, strict=True)
                     if a != b]
            bad += len(diffs)
            if diffs and args.explain:
                a, b = next((a, b) for a, b in zip(got.facts.tus, fresh.facts.tus, strict=True)
                            if a != b)
                for name in ("functions", "calls", "field_stores", "object_refs", "diagnostics",
                             "addressed", "errors"):
                    x, y = getattr(a, name), getattr(b, name)
                    if x != y:
                        if isinstance(x, tuple) and len(x) == len(y):
                            i = next(i for i in range(len(x)) if x[i] != y[i])
                            print(f"  {a.file} {name}[{i}]:\n    carried {x[i]}\n"
                                  f"    fresh   {y[i]}")
                        else:
                            print(f"  {a.file} {name}: {len(x)} carried, {len(y)} fresh"
                                  if isinstance(x, tuple) else f"  {a.file} {name}: {x} / {y}")
            total_parsed += got.parsed
            total_carried += got.carried
            total_spliced += got.spliced
            print(f"{c.sha[:10]} {c.subject[:50]:50} parsed {got.parsed:3} carried "
                  f"{got.carried:3} spliced {got.spliced:3} differ {len(diffs)} "
                  f"{' '.join(diffs)}", flush=True)
        print(f"total: parsed {total_parsed}, carried {total_carried}, spliced "
              f"{total_spliced}, differing TUs {bad}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
