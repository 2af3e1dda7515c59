"""Splices and renames a third review of the header carry-over attacked
(sixth session): each test builds a small tree or repository and compares
what the carry-over or a scan gives with a fresh parse."""

from __future__ import annotations

import os

import pytest

from .test_delta import (
    HEADER,
    LOCKED,
    OTHER,
    USER,
    _change,
    _facts,
    _fresh,
    _step,
    _tree,
    _write,
    with_include,
)
from .test_scan import committed_repo, git, scanned_and_fresh

PROTO = "void dev_reset(DevState *s);"
POKE = "\nstatic inline int dev_poke(void)\n{\n    return dev_helper();\n}"


def test_splice_prototype_under_ifdef_set_by_one_tu(tmp_path: object) -> None:
    """A shared (unchanged) header declares dev_helper() coroutine_fn only
    under CFG_ONE, which only user.c sets (in a header of its own). dev.h
    gains an inline function calling dev_helper(): user.c's call must carry
    the annotation."""
    _step(tmp_path, [
        ("inc/helper.h", "#ifndef HELPER_H\n#define HELPER_H\n#ifdef CFG_ONE\n"
         "int coroutine_fn dev_helper(void);\n#else\nint dev_helper(void);\n#endif\n#endif\n"),
        ("hw/dev.h", with_include(HEADER, "../inc/helper.h")),
        ("cfg/one.h", "#define CFG_ONE 1\n"),
        ("hw/user.c", '#include "../cfg/one.h"\n' + USER)],
        "hw/dev.h", PROTO, PROTO + POKE)


def test_splice_typedef_differs_per_tu(tmp_path: object) -> None:
    """`Ops` is a typedef of struct OpsA in user.c, of struct OpsB in the
    others; dev.h's new inline calls o->run(): callee OpsA.run vs OpsB.run."""
    _step(tmp_path, [
        ("cfg/a.h", "struct OpsA { void (*run)(void); };\ntypedef struct OpsA Ops;\n"),
        ("cfg/b.h", "struct OpsB { void (*run)(void); };\ntypedef struct OpsB Ops;\n"),
        ("hw/user.c", '#include "../cfg/a.h"\n' + USER),
        ("hw/other.c", '#include "../cfg/b.h"\n' + OTHER),
        ("hw/locked.c", '#include "../cfg/b.h"\n' + LOCKED)],
        "hw/dev.h", PROTO, PROTO + "\nstatic inline void dev_run(Ops *o)\n{\n    o->run();\n}")


def test_splice_callee_declared_in_main_file(tmp_path: object) -> None:
    """dev.h's new inline calls dev_helper(), which each TU declares itself
    before including dev.h: user.c as a static coroutine_fn."""
    _step(tmp_path, [
        ("hw/user.c", '#include "qemu-stubs.h"\nstatic int coroutine_fn dev_helper(void)\n{\n'
         "    return 0;\n}\n" + USER),
        ("hw/other.c", "int dev_helper(void);\n" + OTHER),
        ("hw/locked.c", "int dev_helper(void);\n" + LOCKED)],
        "hw/dev.h", PROTO, PROTO + POKE)


def test_splice_member_type_under_ifdef(tmp_path: object) -> None:
    """DevState.ops points to struct OpsA under CFG_ONE (set by user.c
    only), to struct OpsB otherwise; the new inline calls s->ops->run()."""
    _step(tmp_path, [
        ("hw/dev.h", HEADER.replace(
            "typedef struct DevState {",
            "struct OpsA { void (*run)(void); };\nstruct OpsB { void (*run)(void); };\n"
            "typedef struct DevState {\n#ifdef CFG_ONE\n    struct OpsA *ops;\n#else\n"
            "    struct OpsB *ops;\n#endif")),
        ("hw/user.c", "#define CFG_ONE 1\n" + USER)],
        "hw/dev.h", PROTO,
        PROTO + "\nstatic inline void dev_run(DevState *s)\n{\n    s->ops->run();\n}")


PROTO = "void dev_reset(DevState *s);"


def test_splice_header_after_main_functions(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    pre = ('#include "qemu-stubs.h"\n'
           "void early(void)\n{\n    bql_unlock();\n    bql_lock();\n}\n")
    _write(os.path.join(d, "hw", "user.c"),
           pre + USER + "void late(void)\n{\n    bql_unlock();\n}\n")
    _write(os.path.join(d, "hw", "other.c"), pre + OTHER)
    _write(os.path.join(d, "hw", "locked.c"), pre + LOCKED)
    assert _facts(d, cache).parsed == 3
    poke = "\nstatic inline void dev_poke(void)\n{\n    bql_lock();\n    bql_unlock();\n}"
    for old, new in ((PROTO, PROTO + poke),
                     ("    bql_lock();\n    bql_unlock();\n}", "    bql_unlock();\n}")):
        got = _facts(d, cache, _change(d, old, new))
        assert got.facts.tus == _fresh(d, tmp_path)


def test_two_headers_spliced_together(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    d2 = os.path.join(d, "hw", "dev2.h")
    _write(d2, '#include "qemu-stubs.h"\n'
           "static inline void dev2_f(void)\n{\n    bql_unlock();\n}\n")
    for name, text in (("user.c", USER), ("other.c", OTHER), ("locked.c", LOCKED)):
        _write(os.path.join(d, "hw", name),
               text.replace('#include "dev.h"\n', '#include "dev.h"\n#include "dev2.h"\n'))
    assert _facts(d, cache).parsed == 3
    with open(d2, "rb") as fh:
        b2 = fh.read()
    prev = _change(d, PROTO, PROTO + "\nstatic inline void dev_poke(void)\n{\n    bql_lock();\n}")
    _write(d2, b2.decode().replace("    bql_unlock();\n", "    bql_unlock();\n    dev_kick(0);\n"))
    prev[d2] = b2
    got = _facts(d, cache, prev)
    assert got.facts.tus == _fresh(d, tmp_path)


@pytest.mark.parametrize("kind", ["rename", "rename-edit"])
def test_a_header_renamed_to_where_an_include_looks_first(tmp_path: object,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         kind: str) -> None:
    """The reverse of test_a_header_renamed_away_is_not_read_from_memory:
    hw/z.h is renamed to hw/x.h, which user.c's #include "x.h" now finds
    before ./x.h."""

    d = os.path.join(str(tmp_path), "repo")
    base = committed_repo(d, {
        "hw/z.h": "int coroutine_fn xval(void);\nint z1;\nint z2;\nint z3;\n",
        "x.h": "int xval(void);\n",
        "hw/user.c": '#include "x.h"\nint user(void)\n{\n    return xval();\n}\n'})
    git(d, "mv", "hw/z.h", "hw/x.h")
    if kind == "rename-edit":
        with open(os.path.join(d, "hw", "x.h"), "a") as fh:
            fh.write("int z4;\n")
        git(d, "add", "-A")
    git(d, "commit", "-qm", "rename")
    scanned, fresh = scanned_and_fresh(d, base, tmp_path, monkeypatch)
    assert any(c.callee_annotations for tu in fresh for c in tu.calls)  # type: ignore[attr-defined]
    assert scanned == fresh


# A fourth review: line moves in a changed header that is not spliced.

KICK = ("static inline void dev_kick(DevState *s)\n{\n    bql_lock();\n"
        "    s->level++;\n    bql_unlock();\n}\n")


def test_line_map_ignores_a_commented_out_copy(tmp_path: object) -> None:
    """The change adds a commented-out copy of dev_kick() above it and a
    comment on its first line: the function must not move into the copy."""
    new = ("/*\n" + KICK + "*/\n\n"
           + KICK.replace("(DevState *s)\n", "(DevState *s) /* real */\n"))
    _step(tmp_path, [], "hw/dev.h", KICK, new)


def test_body_split_over_an_included_file(tmp_path: object) -> None:
    """user_body()'s body comes from hw/body.inc, which the step changes:
    its statements carry no file of their own, so the TU is parsed."""
    inc = "if (s->level) {\n    bql_lock();\n}\n"
    user = USER + "void user_body(DevState *s)\n{\n#include \"body.inc\"\n}\n"
    _step(tmp_path, [("hw/body.inc", inc), ("hw/user.c", user)],
          "hw/body.inc", "if (s->level) {", "/* A comment. */\nif (s->level) {")


# A fifth review: what the line moves and the added-file rule still missed.


@pytest.mark.parametrize("inc", [
    "ret = 1;\n",
    "again:\n    if (ret) {\n        ret = 0;\n    }\n",
])
def test_fragment_of_plain_statements(tmp_path: object, inc: str) -> None:
    """A body piece in a .inc with no call and no statement keyword first."""
    user = (USER + "int user_body(void)\n{\n    int ret = 0;\n#include \"body.inc\"\n"
            "    return ret;\n}\n")
    first = inc.split("\n")[0]
    _step(tmp_path, [("hw/body.inc", inc), ("hw/user.c", user)],
          "hw/body.inc", first, "/* A comment. */\n" + first)


def test_line_value_equal_to_a_written_argument(tmp_path: object) -> None:
    h = HEADER.replace("    bql_lock();\n    s->level++;", "    bql_lock();\n    DEV_LOGV(22);"
                       ).replace("#define DEV_LOCKED(s)", "void dev_log(int line, ...);\n"
                                 "#define DEV_LOGV(...) dev_log(__LINE__, __VA_ARGS__)\n"
                                 "#define DEV_LOCKED(s)")
    _step(tmp_path, [("hw/dev.h", h)], "hw/dev.h", "    int level;",
          "    int level;\n    int spare;")


def test_object_macro_spreading_arguments(tmp_path: object) -> None:
    h = HEADER.replace("    bql_lock();\n    s->level++;", "    bql_lock();\n    dev_log(HERE);"
                       ).replace("#define DEV_LOCKED(s)", "void dev_log(int line, ...);\n"
                                 "#define HERE __LINE__, 24\n#define DEV_LOCKED(s)")
    _step(tmp_path, [("hw/dev.h", h)], "hw/dev.h", "    int level;",
          "    int level;\n    int spare;")


def test_a_file_added_that_has_include_tests(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "t")
    cache = os.path.join(str(tmp_path), "cache")
    _tree(d)
    with open(os.path.join(d, "hw", "user.c"), "a") as fh:
        fh.write('#if __has_include("x.h")\n#include "x.h"\n#endif\n'
                 "int xval(void);\nint user_x(void)\n{\n    return xval();\n}\n")
    assert _facts(d, cache).parsed == 3
    added = os.path.join(d, "hw", "x.h")
    _write(added, "int coroutine_fn xval(void);\n")
    got = _facts(d, cache, {added: None})
    assert got.facts.tus == _fresh(d, tmp_path)


def test_line_arg_does_not_depend_on_the_tus_asked_before(tmp_path: object) -> None:
    """A macro defined in two headers: which definition the bounded walk
    through macro bodies follows first is the TU's include order, whatever
    TU asked before (a seventh-session review: the run-wide index of macro
    bodies had its own order)."""
    from reviewer.extract.delta import Carrier
    from reviewer.extract.facts import Call

    root = str(tmp_path)
    chain = "".join(f"#define A{k} A{k + 1}\n" for k in range(80))
    x, y = os.path.join(root, "x.h"), os.path.join(root, "y.h")
    _write(x, "#define M P\n#define P A0\n" + chain)
    _write(y, "#define M Q\n#define Q f(a, __LINE__)\n")
    call = Call(caller="g", callee="f", via="direct", file="t.c", line=1, col=1, macro="M")
    alone = Carrier(root, (), {x: b""})._line_arg({y: "h", x: "h"}, call, 1)
    shared = Carrier(root, (), {x: b""})
    shared._line_arg({x: "h", y: "h"}, call, 1)
    assert shared._line_arg({y: "h", x: "h"}, call, 1) == alone
