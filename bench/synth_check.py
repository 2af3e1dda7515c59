#!/usr/bin/env python3
"""Compare reviewer's generated-header stand-ins with a real build's headers.

    python bench/synth_check.py QEMU_CHECKOUT QEMU_BUILD_DIR

For every stand-in that the build also generated, compares the identifiers
each declares: enum constants, struct members (as 'Struct.member'), and the
names of declared functions. Prints per kind how many the build has, how many
the stand-ins lack, and how many they add, with examples. Not run in CI (it
needs a QEMU build); used to check synth.py's naming rules.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import defaultdict

from reviewer.extract.synth import generate

_ENUM = re.compile(r"typedef enum (\w+) \{(.*?)\}", re.S)
_STRUCT = re.compile(r"^struct (\w+) \{\n(.*?)^\};", re.S | re.M)
_FUNC = re.compile(r"\b(qmp_\w+|qapi_event_send_\w+|visit_type_\w+|qapi_free_\w+|trace_\w+)\(")
_CONST = re.compile(r"^\s+(\w+)(?: = \d+)?,", re.M)
_FIELD = re.compile(r"^    [^;{}]*?(\w+);", re.M)


def names(text: str) -> dict[str, set[str]]:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out: dict[str, set[str]] = defaultdict(set)
    for m in _ENUM.finditer(text):
        out["enum constants"] |= set(_CONST.findall(m.group(2)))
    for m in _STRUCT.finditer(text):
        body = re.sub(r"union \{.*?\} u;", "", m.group(2), flags=re.S)
        out["struct members"] |= {f"{m.group(1)}.{f}" for f in _FIELD.findall(body)}
    out["functions"] |= {f for f in _FUNC.findall(text) if not f.startswith(("qmp_marshal_",))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("qemu")
    ap.add_argument("build")
    args = ap.parse_args()
    headers, problems = generate(os.path.abspath(args.qemu))
    for p in problems:
        print(f"problem: {p}")
    want: dict[str, set[str]] = defaultdict(set)
    got: dict[str, set[str]] = defaultdict(set)
    compared = 0
    for rel, text in sorted(headers.items()):
        real = os.path.join(args.build, rel)
        if not os.path.isfile(real):
            print(f"not in the build: {rel}")
            continue
        compared += 1
        with open(real, encoding="utf-8") as fh:
            for kind, s in names(fh.read()).items():
                want[kind] |= s
        for kind, s in names(text).items():
            got[kind] |= s
    print(f"{compared} headers compared")
    for kind in sorted(want):
        lack, extra = want[kind] - got[kind], got[kind] - want[kind]
        print(f"{kind}: build {len(want[kind])}, lacking {len(lack)}, extra {len(extra)}")
        print("    lacking: " + " ".join(sorted(lack)[:15]))
        print("    extra:   " + " ".join(sorted(extra)[:15]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
