from __future__ import annotations

from reviewer.extract import ctext


def test_call_at_reads_args_as_written() -> None:
    buf = b"x = qemu_loadvm_state(f, /* c */ true, g(a, b), \"s,(\");"
    assert ctext.call_at(buf, 4) == ("qemu_loadvm_state", ["f", "true", "g(a, b)", '"s,("'])


def test_call_at_field_and_grouping() -> None:
    assert ctext.call_at(b"vmsd->post_load(o, 1)", 0) == ("post_load", ["o", "1"])
    assert ctext.call_at(b"(*fn)(x)", 0) == ("fn", ["x"])
    assert ctext.call_at(b"bql_lock()", 0) == ("bql_lock", [])
    assert ctext.call_at(b"ops[i](x)", 0) == ("ops", ["x"])


def test_conditions() -> None:
    assert ctext.keyword_condition(b"if (!bql_held) {", 0, "if") == "!bql_held"
    assert ctext.for_parts(b"for (;;) {}", 0) == (False, False, False, "")
    assert ctext.for_parts(b"for (i = 0; i < n; i++)", 0) == (True, True, True, "i < n")


def test_markers_before() -> None:
    buf = b"/* coroutine_fn in a comment */\nint coroutine_fn foo(void);"
    assert ctext.markers_before(buf, buf.index(b"foo"), -1) == ("coroutine_fn",)
    buf = b"/* coroutine_fn */\nint foo(void);"
    assert ctext.markers_before(buf, buf.index(b"foo"), -1) == ()


def test_unbalanced_is_none() -> None:
    assert ctext.call_at(b"foo(a, b", 0) is None
    assert ctext.balanced(b"x", 0) is None
