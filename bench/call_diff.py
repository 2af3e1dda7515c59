#!/usr/bin/env python3
"""Compare the call sites of two `reviewer facts -f json` documents.

    python bench/call_diff.py BUILD.json NOBUILD.json [--top N]

A call site is (file, line, col, callee), deduplicated across TUs (headers in
scope are read by several TUs). Prints the distinct sites of each side, how many
only one side has (the most frequent callees of each), the error total and the
missing generated headers of the second document. Used to measure how degraded
no-build mode is (docs/validation.md); not run in CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

Site = tuple[str, int, int, str]


def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def sites(doc: dict[str, Any]) -> set[Site]:
    return {
        (c["file"], c["line"], c["col"], c["callee"])
        for tu in doc["tus"]
        for c in tu["calls"]
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference", help="build-mode JSON")
    ap.add_argument("other", help="no-build-mode JSON")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    ref, other = _load(args.reference), _load(args.other)
    a, b = sites(ref), sites(other)
    missing, extra = a - b, b - a
    print(f"reference {len(a)} sites, other {len(b)}; both {len(a & b)}")
    share = 100 * len(missing) / max(1, len(a))
    print(f"missing {len(missing)} ({share:.1f}%), extra {len(extra)}")
    for label, diff in (("missing", missing), ("extra", extra)):
        top = Counter(s[3] for s in diff).most_common(args.top)
        print(f"  {label} by callee: " + ", ".join(f"{n} {c}" for n, c in top))
    errors = [(tu["errors"], tu["file"]) for tu in other["tus"]]
    total = sum(e for e, _ in errors)
    worst = ", ".join(f"{f} {e}" for e, f in sorted(errors, reverse=True)[:5])
    print(f"other: {len(errors)} TUs, {total} errors; worst: {worst}")
    headers = Counter(h for tu in other["tus"] for h in tu["missing_headers"])
    print("other: missing headers: " + ", ".join(f"{h} ({n})" for h, n in headers.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
