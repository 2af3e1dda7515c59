"""Header changes that cannot alter a TU's facts keep its cached facts
(reviewer.extract.delta): what counts as a change to which names, and, on a
small tree, that facts carried over equal the facts of a fresh parse."""

from __future__ import annotations

import os
import shutil

import pytest

from reviewer.extract.delta import changed_names
from reviewer.extract.facts import TUFacts
from reviewer.extract.runner import RunResult, run

from .conftest import FIXTURES

HEADER = """\
#ifndef DEV_H
#define DEV_H
#include "qemu-stubs.h"

/* The device state. */
typedef struct DevState {
    int level;
    bool (*ready)(void *opaque);
} DevState;

#define DEV_LOCKED(s) ((s)->level > 0)

void dev_reset(DevState *s);
int coroutine_fn dev_load(DevState *s,
                          int version);

static inline void dev_kick(DevState *s)
{
    bql_lock();
    s->level++;
    bql_unlock();
}

/* A macro invocation over two lines: __LINE__ is where it ends. */
int dev_line(int line);
#define DEV_CHECKER(name) \
    static inline int name(void) { return dev_line(__LINE__); }
DEV_CHECKER(
    dev_check)
#endif
"""


def test_changed_names() -> None:
    add_proto = HEADER.replace("void dev_reset(DevState *s);",
                               "void dev_reset(DevState *s);\nvoid dev_stop(DevState *s);")
    assert changed_names(HEADER, add_proto) == {"dev_stop"}
    comment = HEADER.replace("/* The device state. */", "/* The device\n * state. */\n")
    assert changed_names(HEADER, comment) == frozenset()
    member = HEADER.replace("    int level;", "    int level;\n    int spare[4];")
    assert changed_names(HEADER, member) == {"spare"}
    proto = HEADER.replace("int version);", "int version, bool bql_held);")
    assert changed_names(HEADER, proto) == {"dev_load"}
    macro = HEADER.replace("> 0)", ">= 1)")
    assert changed_names(HEADER, macro) == {"DEV_LOCKED"}
    inline = HEADER.replace("s->level++;", "s->level += 2;")
    assert changed_names(HEADER, inline) == {"dev_kick"}
    cond = HEADER.replace("void dev_reset(DevState *s);",
                          "#ifdef CONFIG_X\nvoid dev_reset(DevState *s);\n#endif")
    assert changed_names(HEADER, cond) is None
    include = with_include(HEADER, "b.h")
    assert changed_names(HEADER, include) is None
    # An added #include counts for the names the header it opens brings.
    assert changed_names(HEADER, include, lambda item: frozenset()) == frozenset()
    assert changed_names(HEADER, include, lambda item: frozenset({"b_new"})) == {"b_new"}
    assert changed_names(HEADER, include, lambda item: None) is None
    # Order matters: a prototype moved into an #if block is a change.
    moved = HEADER.replace("void dev_reset(DevState *s);\n", "").replace(
        "#endif", "void dev_reset(DevState *s);\n#endif")
    assert changed_names(HEADER, moved) is not None
    assert "dev_reset" in (changed_names(HEADER, moved) or ())
    # Every declarator of a member; attribute macros and bit widths are no names.
    two = HEADER.replace("    int level;", "    long level, spare QEMU_ALIGNED(8);")
    assert changed_names(HEADER, two) == {"level", "spare"}
    # An enumerator inserted renumbers the rest.
    en = "enum E { A, B, C };\n"
    assert changed_names(en, "enum E { A, N, B, C };\n") == {"A", "N", "B", "C"}
    # Braces in a character literal do not end an item early.
    lit = "static inline int f(void) { return '{'; }\nint g(void);\n"
    assert changed_names(lit, lit.replace("g(void)", "g(int)")) == {"g"}
    assert changed_names(None, HEADER) is None


USER = """\
#include "dev.h"

static int users;

void dev_reset(DevState *s)
{
    s->level = 0;
    users++;
}
"""

OTHER = """\
#include "dev.h"

int other_load(DevState *s)
{
    return s->ready(s) ? 1 : 0;
}
"""

LOCKED = """\
#include "dev.h"

int locked(DevState *s)
{
    return DEV_LOCKED(s);
}
"""


def _tree(d: str) -> None:
    os.makedirs(os.path.join(d, "hw"))
    shutil.copy(os.path.join(FIXTURES, "include", "qemu-stubs.h"), os.path.join(d, "hw"))
    for name, text in (("dev.h", HEADER), ("user.c", USER), ("other.c", OTHER),
                       ("locked.c", LOCKED)):
        with open(os.path.join(d, "hw", name), "w") as fh:
            fh.write(text)


def _facts(d: str, cache: str, previous: dict[str, bytes | None] | None = None,
           use_cache: bool = True):  # type: ignore[no-untyped-def]
    return run(["hw"], root=d, cache_dir=cache, use_cache=use_cache, jobs=1,
               progress=False, previous=previous)


def _change(d: str, old: str, new: str) -> dict[str, bytes | None]:
    path = os.path.join(d, "hw", "dev.h")
    with open(path, "rb") as fh:
        before = fh.read()
    with open(path, "w") as fh:
        fh.write(before.decode().replace(old, new))
    return {path: before}


def test_carried_facts_equal_fresh_ones(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    first = _facts(d, cache)
    assert first.parsed == 3
    # A new member nobody uses, and lines that move the inline function (the
    # header is in scope: its dev_kick() is a fact of every TU).
    prev = _change(d, "    int level;", "    /* Level.\n     * More. */\n    int level;\n"
                   "    int spare;")
    got = _facts(d, cache, prev)
    assert (got.parsed, got.carried) == (0, 3)
    fresh = _facts(d, cache, use_cache=False)
    assert got.facts.tus == fresh.facts.tus
    kick = [f for tu in got.facts.tus for f in tu.functions if f.name == "dev_kick"]
    assert {f.line for f in kick} == {20}
    # A macro only locked.c uses, and a member only other.c calls through.
    prev = _change(d, "> 0)", ">= 1)")
    got = _facts(d, cache, prev)
    assert (got.parsed, got.carried) == (1, 2)
    assert got.facts.tus == _facts(d, cache, use_cache=False).facts.tus
    prev = _change(d, "bool (*ready)(void *opaque);", "bool (*ready)(void *opaque, int n);")
    got = _facts(d, cache, prev)
    assert (got.parsed, got.carried) == (1, 2)
    # A function the header declares or defines is a fact of every includer
    # (the header is in scope): one TU parses again, and the others take the
    # header's new functions from it, exactly as a parse would give them.
    proto = "void dev_reset(DevState *s);"
    kick = "static inline void dev_kick(DevState *s)\n{"
    for old, new in (("s->level++;", "s->level += 2;"), (proto, proto + "\nvoid dev_stop(void);"),
                     # one more function, with calls, before the others
                     (proto, "static inline void dev_poke(void)\n{\n    bql_lock();\n"
                      "    bql_unlock();\n}\n" + proto),
                     (kick, kick + "\n    dev_poke();")):
        got = _facts(d, cache, _change(d, old, new))
        assert (got.parsed, got.carried, got.spliced) == (1, 0, 2)
        assert got.facts.tus == _facts(d, cache, use_cache=False).facts.tus
    # Only the header's own dev_check() calls dev_line().
    got = _facts(d, cache, _change(d, "int dev_line(int line);",
                                   "int dev_line(int line, ...);"))
    assert (got.parsed, got.carried, got.spliced) == (1, 0, 2)
    assert got.facts.tus == _facts(d, cache, use_cache=False).facts.tus
    got = _facts(d, cache, _change(d, "bool (*ready)(void *opaque, int n);\n",
                                   "bool (*ready)(void *opaque, int n);\n    int more;\n"))
    assert (got.parsed, got.carried) == (0, 3)
    with open(os.path.join(d, "hw", "user.c"), "a") as fh:
        fh.write("void user_kick(DevState *s)\n{\n    dev_kick(s);\n}\n")
    _facts(d, cache)
    got = _facts(d, cache, _change(d, "s->level += 2;", "s->level += 3;"))
    assert (got.parsed, got.spliced) == (2, 1)  # user.c calls dev_kick: parsed itself
    assert got.facts.tus == _facts(d, cache, use_cache=False).facts.tus


def test_splice_needs_the_same_header_facts(tmp_path: object) -> None:
    """A header whose functions mean something else in one TU (a macro that
    TU defines first): that TU is parsed, not given another TU's facts."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    header = os.path.join(d, "hw", "dev.h")
    with open(header) as fh:
        text = fh.read()
    with open(header, "w") as fh:
        fh.write(text.replace("    s->level++;\n", "    s->level++;\n#ifdef DEV_TRACE\n"
                              "    dev_line(0);\n#endif\n"))
    with open(os.path.join(d, "hw", "locked.c"), "w") as fh:
        fh.write("#define DEV_TRACE\n" + LOCKED)
    first = _facts(d, cache)
    assert first.parsed == 3
    got = _facts(d, cache, _change(d, "void dev_reset(DevState *s);",
                                   "void dev_reset(DevState *s);\nvoid dev_stop(void);"))
    assert got.parsed + got.spliced == 3 and got.parsed >= 2
    assert got.facts.tus == _facts(d, cache, use_cache=False).facts.tus


def _out_of_scope_step(tmp_path: object, user_extra: str = "") -> tuple[RunResult, list[TUFacts]]:
    """dev.h and qemu-stubs.h moved out of the scope (to include/), user.c
    with `user_extra` appended, cached; then dev.h gains a prototype nobody
    calls: (the run with the carry-over, a fresh parse's TUs)."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    os.makedirs(os.path.join(d, "include"))
    shutil.move(os.path.join(d, "hw", "dev.h"), os.path.join(d, "include", "dev.h"))
    shutil.move(os.path.join(d, "hw", "qemu-stubs.h"), os.path.join(d, "include"))
    if user_extra:
        with open(os.path.join(d, "hw", "user.c"), "a") as fh:
            fh.write(user_extra)

    def facts(previous=None, use_cache=True):  # type: ignore[no-untyped-def]
        return run(["hw/user.c", "hw/other.c", "hw/locked.c"], root=d, cache_dir=cache,
                   use_cache=use_cache, jobs=1, progress=False, previous=previous)

    assert facts().parsed == 3
    path = os.path.join(d, "include", "dev.h")
    with open(path, "rb") as fh:
        before = fh.read()
    _write(path, before.decode().replace("void dev_reset(DevState *s);",
                                         "void dev_reset(DevState *s);\nvoid dev_stop(void);"))
    return facts({path: before}), list(facts(use_cache=False).facts.tus)


def test_out_of_scope_header(tmp_path: object) -> None:
    """A header outside the scope: a prototype nobody calls changes nothing."""
    got, fresh = _out_of_scope_step(tmp_path)
    assert (got.parsed, got.carried) == (0, 3)
    assert list(got.facts.tus) == fresh


def test_check_carries_facts_across_a_staged_header(tmp_path: object,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`reviewer check` gives the committed version of a staged header as the
    previous one: TUs that cannot see the change keep their facts, and the
    result is the same as without the carry-over."""
    import reviewer.extract.runner as runner
    from reviewer.check import check
    from reviewer.model import load_model

    from .test_scan import git

    d = os.path.join(str(tmp_path), "repo")
    _tree(d)
    git(d, "init", "-q")
    git(d, "add", "-A")
    git(d, "commit", "-qm", "base")
    cache = os.path.join(str(tmp_path), "cache")
    with open(os.path.join(d, "hw", "dev.h")) as fh:
        text = fh.read()
    with open(os.path.join(d, "hw", "dev.h"), "w") as fh:
        fh.write(text.replace("    int level;", "    int level;\n    int spare;"))
    git(d, "add", "hw/dev.h")
    seen: list[int] = []
    real = runner.run

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        got = real(*args, **kw)
        seen.append(got.carried)
        return got

    monkeypatch.setattr("reviewer.check.run", spy)
    got = check(d, paths=["hw"], cache_dir=cache, model=load_model(), jobs=1)
    assert seen[-1] == 3  # the staged side: every TU kept its facts
    monkeypatch.setattr("reviewer.check.run", lambda *a, **kw: real(*a, **{**kw, "previous": None}))
    plain = check(d, paths=["hw"], cache_dir=os.path.join(str(tmp_path), "c2"),
                  model=load_model(), jobs=1)
    assert [f.fingerprint for f in got.new] == [f.fingerprint for f in plain.new]
    assert [f.fingerprint for f in got.fixed] == [f.fingerprint for f in plain.fixed]


def _fresh(d: str, tmp_path: object) -> object:
    """The TUs' facts as a parse with no cache gives them."""
    return _facts(d, os.path.join(str(tmp_path), "fresh"), use_cache=False).facts.tus


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


def with_include(header: str, name: str) -> str:
    """A version of the test header that also includes `name`, after qemu-stubs.h."""
    return header.replace('#include "qemu-stubs.h"', f'#include "qemu-stubs.h"\n#include "{name}"')


def _include_in_dev(d: str, name: str) -> None:
    dev = os.path.join(d, "hw", "dev.h")
    with open(dev) as fh:
        _write(dev, with_include(fh.read(), name))


def test_splice_needs_the_same_meaning_for_the_new_code(tmp_path: object,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two TUs whose old facts of the header agree, but where the header's
    new code means something else: one TU defines, in a header only it
    includes, a macro the new inline function uses. It is parsed, in the
    same round as the representative, and what the cache keeps is what a
    parse gives."""
    import reviewer.extract.runner as runner

    rounds: list[int] = []
    real = runner._map

    def spy(jobs, *a, **kw):  # type: ignore[no-untyped-def]
        if jobs:
            rounds.append(len(jobs))
        return real(jobs, *a, **kw)

    monkeypatch.setattr(runner, "_map", spy)
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    _write(os.path.join(d, "cfg", "user_cfg.h"), "#define dev_helper dev_helper_user\n")
    _write(os.path.join(d, "hw", "user.c"), '#include "../cfg/user_cfg.h"\n' + USER)
    assert _facts(d, cache).parsed == 3
    proto = "void dev_reset(DevState *s);"
    rounds.clear()
    got = _facts(d, cache, _change(d, proto, proto + "\nvoid dev_helper(void);\n"
                                   "static inline void dev_poke(void)\n{\n    dev_helper();\n}"))
    assert rounds == [got.parsed]  # one round of parses
    fresh = _fresh(d, tmp_path)
    assert got.facts.tus == fresh
    assert got.parsed >= 2  # user.c, whatever the representative
    assert _facts(d, cache).facts.tus == fresh  # and a plain run later reads the same


def test_splice_sees_other_headers_changed_with_it(tmp_path: object) -> None:
    """The header's functions use a macro of another header that changes in
    the same step, in one TU's include only: that TU is parsed."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    g = "void note_a(void);\nvoid note_b(void);\n#define DEV_NOTE() note_a()\n"
    _write(os.path.join(d, "cfg", "g.h"), g)
    _write(os.path.join(d, "cfg", "g2.h"), g)
    _write(os.path.join(d, "hw", "user.c"), '#include "../cfg/g.h"\n' + USER)
    _write(os.path.join(d, "hw", "other.c"), '#include "../cfg/g2.h"\n' + OTHER)
    _write(os.path.join(d, "hw", "locked.c"), '#include "../cfg/g2.h"\n' + LOCKED)
    dev = os.path.join(d, "hw", "dev.h")
    with open(dev) as fh:
        _write(dev, fh.read().replace("    s->level++;\n", "    s->level++;\n    DEV_NOTE();\n"))
    assert _facts(d, cache).parsed == 3
    prev: dict[str, bytes | None] = {}
    for path, old, new in ((dev, "void dev_reset(DevState *s);",
                            "void dev_reset(DevState *s);\nvoid dev_stop(void);"),
                           (os.path.join(d, "cfg", "g.h"), "note_a()", "note_b()")):
        with open(path, "rb") as fb:
            prev[path] = fb.read()
        _write(path, (prev[path] or b"").decode().replace(old, new))
    got = _facts(d, cache, prev)
    fresh = _fresh(d, tmp_path)
    assert got.facts.tus == fresh
    assert "note_b" in {c.callee for tu in got.facts.tus if tu.file == "hw/user.c"
                        for c in tu.calls}


def test_splice_follows_the_conditions_a_macro_is_defined_under(tmp_path: object) -> None:
    """A shared header defines a macro only when another macro is set, and
    one TU sets it in a header of its own: the header's new code calls
    something else there. That TU is parsed."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    _write(os.path.join(d, "hw", "helper.h"),
           "#ifdef CFG_ONE\n#define dev_helper dev_helper_one\n#endif\n"
           "void dev_helper(void);\nvoid dev_helper_one(void);\n")
    _include_in_dev(d, "helper.h")
    _write(os.path.join(d, "cfg", "one.h"), "#define CFG_ONE 1\n")
    _write(os.path.join(d, "hw", "user.c"), '#include "../cfg/one.h"\n' + USER)
    assert _facts(d, cache).parsed == 3
    proto = "void dev_reset(DevState *s);"
    got = _facts(d, cache, _change(d, proto, proto + "\nstatic inline void dev_poke(void)\n"
                                   "{\n    dev_helper();\n}"))
    fresh = _fresh(d, tmp_path)
    assert got.facts.tus == fresh
    assert "dev_helper_one" in {c.callee for tu in got.facts.tus if tu.file == "hw/user.c"
                                for c in tu.calls}


def test_guards_and_enumerators() -> None:
    """What makes a header a no-op when included again; the enumerators of
    an enum a change adds are names too."""
    from reviewer.extract.delta import guarded

    assert guarded("/* c */\n#ifndef X_H\n#define X_H\nint x;\n#endif /* X_H */\n")
    assert guarded("#pragma once\nint x;\n")
    assert not guarded("#ifndef X_H\n#define Y_H\nint x;\n#endif\n")
    assert not guarded("#ifndef X_H\n#define X_H\n#endif\nint x;\n")
    assert not guarded("int x;\n")
    assert changed_names("int x;\n", "int x;\nenum { EA, EB };\n") == {"EA", "EB"}


def _added_include_tree(d: str) -> None:
    """dev.h (in scope) includes inc/cond.h, out of scope, whose prototype
    of cond_fn() depends on a macro; user.c calls it."""
    _tree(d)
    _write(os.path.join(d, "inc", "cond.h"),
           "#ifndef COND_H\n#define COND_H\n#ifdef EXTRA_CORO\nint coroutine_fn cond_fn(void);\n"
           "#else\nint cond_fn(void);\n#endif\n#endif\n")
    _include_in_dev(d, "../inc/cond.h")
    with open(os.path.join(d, "hw", "user.c"), "a") as fh:
        fh.write("int user_cond(void)\n{\n    return cond_fn();\n}\n")


def test_added_include_of_a_new_header(tmp_path: object) -> None:
    """A header adds an #include of a header no TU had (out of scope): the
    TUs are parsed (a new header can make errors, declare through pasted
    names, move what the TU had). Each step equals a fresh parse."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _added_include_tree(d)
    extra = os.path.join(d, "inc", "extra.h")
    _write(extra, "#ifndef EXTRA_H\n#define EXTRA_H\nvoid extra_fn(void);\n"
           "typedef struct Extra { void (*init)(void); } Extra;\n"
           "enum { EXTRA_A, EXTRA_B };\n#endif\n")
    assert _facts(d, cache).parsed == 3
    got = _facts(d, cache, _change(d, '#include "qemu-stubs.h"\n',
                                   '#include "qemu-stubs.h"\n#include "../inc/extra.h"\n'))
    assert (got.parsed, got.carried, got.spliced) == (3, 0, 0)
    assert got.facts.tus == _fresh(d, tmp_path)
    # The new header changes: a macro that renames a prototype of dev.h (a
    # fact of every TU). It is among the entries' inputs now.
    with open(extra, "rb") as fh:
        before = fh.read()
    _write(extra, before.decode().replace("void extra_fn(void);",
                                          "#define dev_load dev_load_v2\nvoid extra_fn(void);"))
    got = _facts(d, cache, {extra: before})
    assert got.parsed == 3
    assert got.facts.tus == _fresh(d, tmp_path)
    assert "dev_load_v2" in {f.name for tu in got.facts.tus for f in tu.functions}
    _write(extra, before.decode())
    assert _facts(d, cache).parsed == 0  # back to the version cached first
    # A macro inc/cond.h tests: cond_fn() becomes a coroutine_fn in user.c.
    _write(extra, before.decode().replace("void extra_fn(void);",
                                          "#define EXTRA_CORO 1\nvoid extra_fn(void);"))
    got = _facts(d, cache, {extra: before})
    assert got.parsed == 3
    assert got.facts.tus == _fresh(d, tmp_path)
    assert any(c.callee == "cond_fn" and c.callee_annotations for tu in got.facts.tus
               for c in tu.calls)


def test_added_include_of_a_header_with_a_conditioned_macro(tmp_path: object) -> None:
    """The first time a header comes in, it defines a macro an #if of a
    header the TUs had tests: they are parsed, none keeps its facts."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _added_include_tree(d)
    _write(os.path.join(d, "inc", "extra.h"), "#define EXTRA_CORO 1\n")
    assert _facts(d, cache).parsed == 3
    got = _facts(d, cache, _change(d, '#include "qemu-stubs.h"\n',
                                   '#include "qemu-stubs.h"\n#include "../inc/extra.h"\n'))
    assert got.carried == 0 and got.parsed + got.spliced == 3
    assert got.facts.tus == _fresh(d, tmp_path)


def test_added_include_found_nowhere_or_in_scope(tmp_path: object) -> None:
    """An added #include the TU's flags do not find, or of a header in scope
    (its functions would be facts): the TUs are parsed."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    _write(os.path.join(d, "hw", "more.h"), "static inline void more(void) { }\n")
    assert _facts(d, cache).parsed == 3
    for name in ("more.h", "<no-such-header.h>"):
        inc = f'#include "{name}"' if not name.startswith("<") else f"#include {name}"
        got = _facts(d, cache, _change(d, '#include "qemu-stubs.h"\n',
                                       f'#include "qemu-stubs.h"\n{inc}\n'))
        assert got.carried == 0, name
        assert got.facts.tus == _fresh(d, tmp_path)
        _change(d, f"{inc}\n", "")


def test_macro_renaming_a_prototype_of_the_changed_header(tmp_path: object) -> None:
    """A header in scope gains a macro that renames its own prototype (a
    fact of every TU that includes it): no TU keeps its facts."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    assert _facts(d, cache).parsed == 3
    got = _facts(d, cache, _change(d, "void dev_reset(DevState *s);",
                                   "#define dev_load dev_load_v2\nvoid dev_reset(DevState *s);"))
    assert got.carried == 0
    assert got.facts.tus == _fresh(d, tmp_path)


def test_names_in_string_literals_are_no_uses(tmp_path: object) -> None:
    """A TU whose error message spells the name a change declares still
    keeps its facts: no declaration or macro reaches into a literal."""
    from reviewer.extract.delta import identifiers

    assert identifiers('e = "inflate init failed"; /* open */ c = \'x\'; int y;') == {
        "e", "c", "int", "y"}
    got, fresh = _out_of_scope_step(tmp_path, 'const char *user_why = "dev_stop failed";\n')
    assert (got.parsed, got.carried) == (0, 3)
    assert list(got.facts.tus) == fresh


# Found by a review of the carry-over (2026-11-26, sixth session): each of
# these kept facts a fresh parse does not give.

_CALLS_COND = '#include "../inc/cond.h"\nint user_cond(void)\n{\n    return cond_fn();\n}\n'


def _step(tmp_path: object, files: list[tuple[str, str]], rel: str, old: str, new: str) -> None:
    """A tree with `files` added, cached; then `rel` changes `old` to `new`:
    every TU equals a fresh parse."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    for name, text in files:
        _write(os.path.join(d, name), text)
    assert _facts(d, cache).parsed == 3
    path = os.path.join(d, rel)
    with open(path, "rb") as fh:
        before = fh.read()
    assert old in before.decode()
    _write(path, before.decode().replace(old, new))
    got = _facts(d, cache, {path: before})
    assert got.facts.tus == _fresh(d, tmp_path)


def test_macro_used_in_a_callees_prototype(tmp_path: object) -> None:
    """cond_fn() is declared with a macro the change makes coroutine_fn."""
    _step(tmp_path, [("inc/attr.h", "#ifndef ATTR_H\n#define ATTR_H\n#define COND_ATTR\n#endif\n"),
                     ("inc/cond.h", '#include "attr.h"\nint COND_ATTR cond_fn(void);\n'),
                     ("hw/user.c", USER + _CALLS_COND)],
          "inc/attr.h", "#define COND_ATTR\n", "#define COND_ATTR coroutine_fn\n")


def test_macro_tested_through_another_macro(tmp_path: object) -> None:
    """An #if tests DEV_FEATURES, whose body uses the changed EXTRA_FLAG."""
    _step(tmp_path, [("inc/flag.h", "#define EXTRA_FLAG 0\n"),
                     ("inc/feat.h", '#include "flag.h"\n#define DEV_FEATURES (EXTRA_FLAG + 0)\n'),
                     ("inc/cond.h", '#include "feat.h"\n#if DEV_FEATURES\n'
                      "int coroutine_fn cond_fn(void);\n#else\nint cond_fn(void);\n#endif\n"),
                     ("hw/user.c", USER + _CALLS_COND)],
          "inc/flag.h", "EXTRA_FLAG 0", "EXTRA_FLAG 1")


def test_macro_renaming_a_parameter(tmp_path: object) -> None:
    """dev.h's prototype of dev_load() names a parameter the change turns
    into another name (parameter names are facts)."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    _change(d, "int version);", "int vrs);")
    assert _facts(d, cache).parsed == 3
    got = _facts(d, cache, _change(d, "void dev_reset(DevState *s);",
                                   "#define vrs ver2\nvoid dev_reset(DevState *s);"))
    assert got.facts.tus == _fresh(d, tmp_path)


def test_names_pasted_by_a_macro_invocation(tmp_path: object) -> None:
    """CORO_DECL(xyz) declares xyz_co again, as a coroutine_fn."""
    _step(tmp_path, [("inc/co.h", "#define CORO_DECL(n) int coroutine_fn n##_co(void);\n"
                      "int xyz_co(void);\n"),
                     ("hw/user.c", '#include "../inc/co.h"\n' + USER
                      + "int u(void)\n{\n    return xyz_co();\n}\n")],
          "inc/co.h", "int xyz_co(void);\n", "int xyz_co(void);\nCORO_DECL(xyz)\n")


@pytest.mark.parametrize("extra", [
    '#ifndef CONFIG_EXTRA\n#error "extra.h needs CONFIG_EXTRA"\n#endif\n',
    "#pragma GCC poison users\n",
    "void extra_fn(ExtraType *t);\n",
    '_Static_assert(sizeof(long) == 2, "long is 2");\n',
])
def test_a_new_header_can_make_errors(tmp_path: object, extra: str) -> None:
    """Errors are facts: a header new to the TUs that does not compile there
    (an #error, a poisoned name, an undeclared type, a failed assertion)."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    _write(os.path.join(d, "inc", "extra.h"), extra)
    assert _facts(d, cache).parsed == 3
    got = _facts(d, cache, _change(d, '#include "qemu-stubs.h"\n',
                                   '#include "qemu-stubs.h"\n#include "../inc/extra.h"\n'))
    assert got.facts.tus == _fresh(d, tmp_path)
    assert any(tu.errors for tu in got.facts.tus)


@pytest.mark.parametrize("before", [True, False])
def test_added_include_of_a_header_the_tu_had(tmp_path: object, before: bool) -> None:
    """dev.h gains an #include of a guarded header user.c includes itself.
    Entered before dev.h, the guard makes it a no-op: the facts are kept.
    Entered after, it now comes earlier, ahead of an #ifdef that tests its
    macro: user.c is parsed."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    _write(os.path.join(d, "inc", "extra.h"),
           "#ifndef EXTRA_H\n#define EXTRA_H\n#define HAVE_A 1\n#endif\n")
    _change(d, "void dev_reset(DevState *s);",
            "void dev_reset(DevState *s);\n#ifdef HAVE_A\nvoid dev_a(void);\n#endif")
    inc = '#include "../inc/extra.h"\n'
    _write(os.path.join(d, "hw", "user.c"), inc + USER if before else USER + inc)
    assert _facts(d, cache).parsed == 3
    got = _facts(d, cache, _change(d, '#include "qemu-stubs.h"\n',
                                   '#include "qemu-stubs.h"\n' + inc))
    assert got.facts.tus == _fresh(d, tmp_path)
    user = next(tu for tu in got.facts.tus if tu.file == "hw/user.c")
    assert "dev_a" in {f.name for f in user.functions}
    # other.c and locked.c never had extra.h: parsed either way.
    assert (got.parsed, got.carried) == ((2, 1) if before else (3, 0))


def test_added_include_of_an_unguarded_header_the_tu_had(tmp_path: object) -> None:
    """Entered before, but with no guard: included again, it is no no-op."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    _write(os.path.join(d, "inc", "extra.h"), "struct Extra { int a; };\n")
    inc = '#include "../inc/extra.h"\n'
    _write(os.path.join(d, "hw", "user.c"), inc + USER)
    assert _facts(d, cache).parsed == 3
    got = _facts(d, cache, _change(d, '#include "qemu-stubs.h"\n',
                                   '#include "qemu-stubs.h"\n' + inc))
    assert got.carried == 0
    assert got.facts.tus == _fresh(d, tmp_path)


# Found by a second review (sixth session).

def test_size_assertion_on_a_struct_that_grows(tmp_path: object) -> None:
    """A struct gains a member: an assertion on its size now fails, and
    errors are facts."""
    _step(tmp_path, [("inc/s.h", "struct S { int a; };\n"),
                     ("hw/user.c", '#include "../inc/s.h"\n'
                      '_Static_assert(sizeof(struct S) == 4, "S");\n' + USER)],
          "inc/s.h", "int a;", "int a; int s_extra;")


def test_prototype_that_conflicts_with_another_header(tmp_path: object) -> None:
    _step(tmp_path, [("inc/a.h", "void foo(int x);\n"), ("inc/b.h", "int bar;\n"),
                     ("hw/user.c", '#include "../inc/a.h"\n#include "../inc/b.h"\n' + USER)],
          "inc/b.h", "int bar;\n", "int bar;\nvoid foo(long x);\n")


def test_typedef_behind_a_member_changes_a_field_callee(tmp_path: object) -> None:
    _step(tmp_path, [("inc/y.h", "struct A { void (*cb)(void); };\n"
                      "struct B { void (*cb)(void); };\ntypedef struct A Foo;\n"),
                     ("inc/x.h", '#include "y.h"\ntypedef struct State { Foo *dev; } State;\n'),
                     ("hw/user.c", '#include "../inc/x.h"\n' + USER
                      + "void go(State *s)\n{\n    s->dev->cb();\n}\n")],
          "inc/y.h", "typedef struct A Foo;", "typedef struct B Foo;")


def test_line_written_in_a_plain_call(tmp_path: object) -> None:
    """dev_line(__LINE__) in a header's inline function whose lines move (as
    migration.h's bql_lock_impl(__FILE__, __LINE__))."""
    here = HEADER.replace("int dev_line(int line);\n",
                          "int dev_line(int line);\nstatic inline int dev_here(void)\n{\n"
                          "    return dev_line(__LINE__);\n}\n")
    _step(tmp_path, [("hw/dev.h", here)], "hw/dev.h", "    int level;",
          "    int level;\n    int spare;")


def test_literal_near_the_line_of_a_macro_call(tmp_path: object) -> None:
    """A constant written in a macro call is no line number, even when it
    names a line just after the call."""
    setc = HEADER.replace("    bql_lock();\n    s->level++;", "    bql_lock();\n    DEV_SET(s, 24);"
                          ).replace("#define DEV_LOCKED(s)", "void dev_set(DevState *s, int n);\n"
                                    "#define DEV_SET(s, n) dev_set(s, n)\n#define DEV_LOCKED(s)")
    assert setc.split("\n")[21].strip() == "DEV_SET(s, 24);"  # line 22
    _step(tmp_path, [("hw/dev.h", setc)], "hw/dev.h", "    int level;",
          "    int level;\n    int spare;")


def test_counter_moved_by_a_use_before_it(tmp_path: object) -> None:
    ctr = HEADER.replace("int dev_line(int line);\n",
                         "int dev_line(int line);\nstatic inline int dev_ctr(void)\n{\n"
                         "    return dev_line(__COUNTER__);\n}\n")
    _step(tmp_path, [("inc/c.h", "int c_pad;\n"), ("hw/dev.h", ctr),
                     ("hw/user.c", '#include "../inc/c.h"\n' + USER)],
          "inc/c.h", "int c_pad;\n", "int c_pad;\nstatic inline int c_x(void)\n{\n"
          "    return __COUNTER__;\n}\n")


@pytest.mark.parametrize("missing", [False, True])
def test_a_file_added_where_an_include_looks_first(tmp_path: object, missing: bool) -> None:
    """A step adds hw/x.h: user.c's #include "x.h" now finds it (the
    includer's directory comes first) instead of the x.h it found through
    -iquote <root>, or instead of nothing. The cache entry's files all hash
    the same, yet its facts are stale: the TU is parsed."""
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    if not missing:
        _write(os.path.join(d, "x.h"), "int xval(void);\n")
    with open(os.path.join(d, "hw", "user.c"), "a") as fh:
        fh.write('#include "x.h"\nint user_x(void)\n{\n    return xval();\n}\n')
    assert _facts(d, cache).parsed == 3
    added = os.path.join(d, "hw", "x.h")
    _write(added, "int coroutine_fn xval(void);\n")
    got = _facts(d, cache, {added: None})
    assert got.facts.tus == _fresh(d, tmp_path)
    assert any(c.callee == "xval" and c.callee_annotations for tu in got.facts.tus
               for c in tu.calls)
    assert got.parsed == 1  # user.c; the others never looked for an x.h
