#!/usr/bin/env python3
"""Compare `reviewer facts` with a careful grep on a real QEMU tree.

    python bench/oracle_check.py QEMU_CHECKOUT [--build-dir DIR] [--json OUT]

The grep side strips comments and preprocessor definitions, then matches each
site kind with a regular expression over migration/ and include/migration/; the
facts side reads `reviewer facts migration include/migration -f json`. For each
kind it prints both counts and every site found by one side only. Not run in
CI (it needs a QEMU tree); results are recorded in docs/validation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

Site = tuple[str, int]

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def _blank(m: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", m.group())


def _source_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = _COMMENT.sub(_blank, fh.read())
    lines = text.split("\n")
    out: list[str] = []
    in_define = False
    for line in lines:
        starts = line.lstrip().startswith("#")
        if starts or in_define:
            in_define = line.rstrip().endswith("\\")
            out.append("")
            continue
        out.append(line)
    return out


def _files(root: str) -> Iterator[str]:
    for sub in ("migration", "include/migration"):
        for d, _, files in os.walk(os.path.join(root, sub)):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(d, f), root)


GREP = {
    "coroutine_fn": r"\bcoroutine_fn\b",
    "bql_lock()": r"\bbql_lock\s*\(\s*\)",
    "bql_unlock()": r"\bbql_unlock\s*\(\s*\)",
    "bql_lock_impl()": r"\bbql_lock_impl\s*\(",
    "WITH_BQL_HELD": r"\bWITH_BQL_HELD\s*\(",
    "WITH_BQL_RELEASED": r"\bWITH_BQL_RELEASED\s*\(",
    "QEMU lock guards": r"\b(WITH_)?QEMU_LOCK_GUARD\s*\(",
    "coroutine API calls": r"\b(qemu_coroutine_\w+|qemu_in_coroutine|qemu_co_\w+)\s*\(",
    "qemu_loadvm_state(": r"\bqemu_loadvm_state\s*\(",
    "qemu_loadvm_state_main(": r"\bqemu_loadvm_state_main\s*\(",
    "assert(bql_locked())": r"\bassert\s*\(\s*!?\s*bql_locked\s*\(\s*\)\s*\)",
    "assert(x == bql_locked())": r"\bassert\s*\(\s*\w+\s*==\s*bql_locked\s*\(\s*\)\s*\)",
    "qemu_thread_create": r"\bqemu_thread_create\s*\(",
}

# Declarations/definitions are not call sites: a name followed by '(' at the
# start of a line after a return type is a definition in QEMU style.
_DEF = re.compile(r"^\s*(static\s+|extern\s+)?[\w\s\*]+\b(\w+)\s*\([^;]*\)?\s*;?\s*$")


def grep_sites(root: str) -> dict[str, set[Site]]:
    out: dict[str, set[Site]] = {k: set() for k in GREP}
    for rel in _files(root):
        lines = _source_lines(os.path.join(root, rel))
        for i, line in enumerate(lines, 1):
            for kind, pat in GREP.items():
                for m in re.finditer(pat, line):
                    if kind in ("qemu_loadvm_state(", "qemu_loadvm_state_main(",
                                "qemu_thread_create", "coroutine API calls",
                                "bql_lock_impl()"):
                        before = line[: m.start()]
                        # A prototype or definition: "int qemu_loadvm_state(" with a
                        # type before it and nothing like "=", "(", "return".
                        if re.match(r"^\s*(static\s+)?(inline\s+)?[A-Za-z_][\w\s\*]*$",
                                    before) and not re.search(r"\breturn\b", before) and (
                            before.strip() and not before.strip().endswith(("=", "(", ","))
                        ):
                            continue
                    out[kind].add((rel, i))
    return out


def fact_sites(doc: dict[str, object]) -> tuple[dict[str, set[Site]], dict[str, list[str]]]:
    out: dict[str, set[Site]] = {k: set() for k in GREP}
    detail: dict[str, list[str]] = {"qemu_loadvm_state(": [], "qemu_loadvm_state_main(": [],
                                    "qemu_thread_create": []}
    seen_calls: set[tuple[str, int, int, str]] = set()
    for tu in doc["tus"]:  # type: ignore[attr-defined]
        for f in tu["functions"]:
            if "coroutine_fn" in f["annotations"]:
                out["coroutine_fn"].add((f["file"], f["line"]))
        for c in tu["calls"]:
            key = (c["file"], c["line"], c["col"], c["callee"])
            if key in seen_calls:
                continue
            seen_calls.add(key)
            site = (c["file"], c["line"])
            callee, macro = c["callee"], c["macro"]
            if callee == "bql_lock_impl":
                out["bql_lock()" if macro == "bql_lock" else "bql_lock_impl()"].add(site)
            elif callee == "bql_unlock":
                out["bql_unlock()"].add(site)
            elif callee == "with_bql_held_auto_lock" and macro == "WITH_BQL_HELD":
                out["WITH_BQL_HELD"].add(site)
            elif callee == "with_bql_release_auto_unlock" and macro == "WITH_BQL_RELEASED":
                out["WITH_BQL_RELEASED"].add(site)
            elif callee == "qemu_lockable_auto_lock" and macro in (
                "QEMU_LOCK_GUARD", "WITH_QEMU_LOCK_GUARD"
            ):
                out["QEMU lock guards"].add(site)
            elif re.match(r"(qemu_coroutine_\w+|qemu_in_coroutine|qemu_co_\w+)$", callee):
                out["coroutine API calls"].add(site)
            elif callee in ("qemu_loadvm_state", "qemu_loadvm_state_main"):
                out[callee + "("].add(site)
                detail[callee + "("].append(
                    f"{c['file']}:{c['line']} {c['caller']}({', '.join(c['args'])})"
                )
            elif callee == "qemu_thread_create":
                out["qemu_thread_create"].add(site)
        for a in tu["asserts"]:
            if a["kind"] == "bql_locked":
                out["assert(bql_locked())"].add((a["file"], a["line"]))
            elif a["kind"] == "param_eq_bql":
                out["assert(x == bql_locked())"].add((a["file"], a["line"]))
        for e in tu["entries"]:
            if e["api"] == "qemu_thread_create":
                detail["qemu_thread_create"].append(
                    f"{e['file']}:{e['line']} {e['function']} -> {', '.join(e['entry'])} "
                    f"name {e['thread_name']}"
                )
    return out, detail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("qemu")
    ap.add_argument("--build-dir")
    ap.add_argument("--cache-dir")
    ap.add_argument("--json")
    args = ap.parse_args()
    root = os.path.abspath(args.qemu)
    cmd = [sys.executable, "-m", "reviewer.cli", "facts", "--root", root,
           "migration", "include/migration", "-f", "json"]
    if args.build_dir:
        cmd += ["--build-dir", args.build_dir]
    if args.cache_dir:
        cmd += ["--cache-dir", args.cache_dir]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 2
    doc = json.loads(r.stdout)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
    grep = grep_sites(root)
    facts, detail = fact_sites(doc)
    degraded = [f"{tu['file']}({tu['errors']})" for tu in doc["tus"] if tu["degraded"]]
    print(f"mode {doc['mode']}: {len(doc['tus'])} TUs, {len(degraded)} degraded")
    print(f"{'kind':28} {'grep':>5} {'facts':>5} {'both':>5}")
    for kind in GREP:
        g, f = grep[kind], facts[kind]
        print(f"{kind:28} {len(g):5} {len(f):5} {len(g & f):5}")
        for s in sorted(g - f):
            print(f"    only grep : {s[0]}:{s[1]}")
        for s in sorted(f - g):
            print(f"    only facts: {s[0]}:{s[1]}")
    for kind, rows in detail.items():
        print(f"-- {kind}")
        for row in sorted(set(rows)):
            print(f"    {row}")
    bql_held = sorted({
        f"{f['file']}:{f['line']} {f['name']}"
        for tu in doc["tus"] for f in tu["functions"]
        if f["is_definition"] and any(p["name"] == "bql_held" for p in f["params"])
    })
    print(f"-- functions with a bql_held parameter: {len(bql_held)}")
    for row in bql_held:
        print(f"    {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
