"""The precompiled prefix (reviewer.extract.pch): the same facts as a plain
parse, and a PCH that no longer fits is never used."""

from __future__ import annotations

import glob
import os
import pickle
import shutil

import pytest

from reviewer.extract.pch import starts_with_prefix
from reviewer.extract.runner import RunResult, run

OSDEP = """\
#ifndef QEMU_OSDEP_H
#define QEMU_OSDEP_H
#include <stdbool.h>
#define coroutine_fn __attribute__((__annotate__("coroutine_fn")))
void bql_lock_impl(const char *file, int line);
void bql_unlock(void);
#define bql_lock() bql_lock_impl(__FILE__, __LINE__)
static inline int osdep_helper(int x) { return x + 1; }
#endif
"""

TU = """\
/*
 * Licence text, as every QEMU file has.
 */
#include "qemu/osdep.h"   /* first, always */
#include "migration/mig.h"

static void coroutine_fn {name}_co(void)
{{
    bql_lock();
    mig_step(osdep_helper({n}));
    bql_unlock();
}}

void {name}_entry(bool locked)
{{
    if (!locked) {{
        bql_lock();
    }}
    {name}_co();
}}
"""


def _tree(tmp_path: object) -> str:
    root = os.path.join(str(tmp_path), "qemu")
    os.makedirs(os.path.join(root, "include", "qemu"))
    os.makedirs(os.path.join(root, "include", "migration"))
    os.makedirs(os.path.join(root, "migration"))
    with open(os.path.join(root, "include", "qemu", "osdep.h"), "w") as fh:
        fh.write(OSDEP)
    with open(os.path.join(root, "include", "migration", "mig.h"), "w") as fh:
        fh.write("void mig_step(int n);\n"
                 "static inline void mig_inline(void) { bql_lock(); }\n")
    for n, name in enumerate("abcd"):
        with open(os.path.join(root, "migration", f"{name}.c"), "w") as fh:
            fh.write(TU.format(name=name, n=n))
    # Something before the prefix: the header would see it in the TU but not
    # in a PCH, so this one is parsed whole.
    with open(os.path.join(root, "migration", "e.c"), "w") as fh:
        fh.write("#define EXTRA 1\n" + TU.format(name="e", n=9))
    return root


def _run(root: str, cache: str, monkeypatch: pytest.MonkeyPatch, pch: bool = True,
         **kw: object) -> RunResult:
    monkeypatch.setenv("REVIEWER_PCH", "1" if pch else "0")
    return run(["migration"], root=root, cache_dir=cache, jobs=2, progress=False,
               scope=("migration", "include/migration"), **kw)  # type: ignore[arg-type]


def _forget_facts(cache: str) -> None:
    """Empty the fact cache, keeping the stored PCHs."""
    for d in glob.glob(os.path.join(cache, "facts-v*")):
        shutil.rmtree(d)


def _facts(result: RunResult) -> bytes:
    return pickle.dumps(sorted(result.facts.tus, key=lambda t: t.file))


def test_first_include_only() -> None:
    assert starts_with_prefix(b'#include "qemu/osdep.h"\n')
    assert starts_with_prefix(b'/* (c) */\n// x\n\n  #  include "qemu/osdep.h" // why\r\nint x;')
    assert not starts_with_prefix(b'#define X\n#include "qemu/osdep.h"\n')
    assert not starts_with_prefix(b'#include <qemu/osdep.h>\n')
    assert not starts_with_prefix(b'#include "qemu/osdep.h" int x;\n')
    assert not starts_with_prefix(b'#include "qemu/osdep.hh"\n')
    assert not starts_with_prefix(b"")


def test_same_facts_as_a_plain_parse(tmp_path: object,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path)
    plain = _run(root, os.path.join(str(tmp_path), "c0"), monkeypatch, pch=False)
    with_pch = _run(root, os.path.join(str(tmp_path), "c1"), monkeypatch)
    assert plain.precompiled == 0
    assert with_pch.precompiled == 4  # a-d; e.c defines something first
    assert not any(tu.errors for tu in with_pch.facts.tus)
    assert _facts(with_pch) == _facts(plain)
    assert with_pch.problems == plain.problems


def test_changed_prefix_rebuilds_and_cache_follows(tmp_path: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path)
    cache = os.path.join(str(tmp_path), "c")
    _run(root, cache, monkeypatch)
    (first,) = glob.glob(os.path.join(cache, "pch-v2", "*.pch"))
    osdep = os.path.join(root, "include", "qemu", "osdep.h")
    with open(osdep, "w") as fh:
        fh.write(OSDEP.replace("bql_lock_impl(__FILE__, __LINE__)", "bql_lock_impl(__FILE__, 0)"))
    again = _run(root, cache, monkeypatch)
    assert again.parsed == 5  # the facts' entries depend on the prefix's files
    assert again.precompiled == 4
    (second,) = glob.glob(os.path.join(cache, "pch-v2", "*.pch"))
    assert second != first  # rebuilt, and the old one removed
    plain = _run(root, os.path.join(str(tmp_path), "c0"), monkeypatch, pch=False)
    assert _facts(again) == _facts(plain)


def test_damaged_pch_falls_back_to_a_plain_parse(tmp_path: object,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path)
    cache = os.path.join(str(tmp_path), "c")
    first = _run(root, cache, monkeypatch)
    (pch,) = glob.glob(os.path.join(cache, "pch-v2", "*.pch"))
    with open(pch, "wb") as fh:
        fh.write(b"not a PCH" * 100)
    _forget_facts(cache)
    again = _run(root, cache, monkeypatch)
    assert again.parsed == 5
    assert _facts(again) == _facts(first)


def test_prefix_in_scope_or_overridden_is_not_used(tmp_path: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path)
    monkeypatch.setenv("REVIEWER_PCH", "1")
    in_scope = run(["migration"], root=root, cache_dir=os.path.join(str(tmp_path), "c1"),
                   jobs=2, progress=False, scope=("migration", "include/qemu"))
    assert in_scope.precompiled == 0
    assert "osdep_helper" in {f.name for tu in in_scope.facts.tus for f in tu.functions}
    osdep = os.path.join(root, "include", "qemu", "osdep.h")
    cache = os.path.join(str(tmp_path), "c2")
    _run(root, cache, monkeypatch)  # a PCH of the file on disk is stored
    _forget_facts(cache)
    staged = OSDEP.replace("void bql_unlock(void);", "void bql_unlock(void);\nint staged;")
    over = _run(root, cache, monkeypatch, unsaved={osdep: staged.encode()})
    assert over.precompiled == 0
    plain = _run(root, os.path.join(str(tmp_path), "c3"), monkeypatch, pch=False,
                 unsaved={osdep: staged.encode()})
    assert _facts(over) == _facts(plain)


def test_a_pch_built_under_unsaved_files_is_not_kept(tmp_path: object,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`reviewer check` overrides a header the prefix includes: the PCH built
    from the disk's version is not stored under the override's hash, so a
    later run, once the disk holds that content, does not take it."""
    root = _tree(tmp_path)
    cache = os.path.join(str(tmp_path), "c")
    osdep = os.path.join(root, "include", "qemu", "osdep.h")
    staged = OSDEP.replace("bql_lock_impl(__FILE__, __LINE__)", "bql_unlock(/*_FILE__, __LINE__*/)")
    assert len(staged) == len(OSDEP)  # the same size: clang's own check would not see it
    assert _run(root, cache, monkeypatch, unsaved={osdep: staged.encode()}).precompiled == 0
    with open(osdep, "w") as fh:
        fh.write(staged)
    _forget_facts(cache)
    again = _run(root, cache, monkeypatch)
    plain = _run(root, os.path.join(str(tmp_path), "c0"), monkeypatch, pch=False)
    assert _facts(again) == _facts(plain)


def test_an_unwritable_pch_directory_only_costs_time(tmp_path: object,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path)
    cache = os.path.join(str(tmp_path), "c")
    os.makedirs(cache)
    with open(os.path.join(cache, "pch-v2"), "w"):
        pass  # a file where the directory would be
    got = _run(root, cache, monkeypatch)
    assert (got.parsed, got.precompiled) == (5, 0)
    plain = _run(root, os.path.join(str(tmp_path), "c0"), monkeypatch, pch=False)
    assert _facts(got) == _facts(plain)
