"""Property-based tests: no input makes the parsers, the fingerprint or the
renderers raise (bounded examples: this runs in CI)."""

from __future__ import annotations

import json
import os
import tempfile

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reviewer.errors import UserError
from reviewer.findings import Finding, Related
from reviewer.mail.series import parse_message, read_mbox
from reviewer.textsafe import inert

# derandomize: the same examples on every run, so that CI cannot turn red on a
# search's luck; new examples come from running with --hypothesis-seed.
FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Text as it comes out of patches: any code point (lone surrogates too, from
# non-UTF-8 file names), terminal escapes, markup and template syntax.
hostile = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None), max_size=20),
    st.sampled_from(["\x1b[31m", "\x1b]0;t\x07", "\x9b2J", "<script>x</script>", "{{ 7*7 }}",
                     "{% raw %}", "a\r\nBcc: v@x", "\udce9", "|", "`", "&amp;"]),
).map(lambda s: s.replace("\0", ""))


@FAST
@given(st.binary(max_size=2000))
def test_parse_message_never_raises_on_bytes(raw: bytes) -> None:
    parse_message(raw)


@FAST
@example(subject="", name=":;\x80", body="", diff=True)  # found by hypothesis: a non-UTF-8 name
@example(subject="", name="", body="\ud800", diff=False)  # a surrogate no byte escapes
@given(hostile, hostile, hostile, st.booleans())
def test_parse_message_on_patch_shaped_mail(subject: str, name: str, body: str,
                                            diff: bool) -> None:
    raw = (f"From: {name} <a@b>\nSubject: [PATCH 1/2] {subject}\nMessage-ID: <{name}@x>\n"
           f"References: {subject}\n\n{body}\n"
           + ("---\ndiff --git a/f.c b/f.c\n+++ b/f.c\n@@ -1 +1 @@\n+x\n" if diff else ""))
    try:
        data = raw.encode("utf-8", "surrogateescape")  # \udce9 back to the byte 0xe9
    except UnicodeEncodeError:
        data = raw.encode("utf-8", "surrogatepass")  # \ud800: bytes no UTF-8 decoder takes
    p = parse_message(data)
    if p is not None:
        assert p.n == 1 and "\n" not in p.subject


@FAST
@given(st.lists(st.binary(max_size=300), max_size=4), st.booleans())
def test_read_mbox_raises_only_user_errors(chunks: list[bytes], as_mbox: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.mbox")
        with open(path, "wb") as fh:
            for c in chunks:
                fh.write((b"From x Mon Sep 17 00:00:00 2001\n" if as_mbox else b"") + c + b"\n")
        try:
            s = read_mbox(path)
        except UserError as exc:
            assert "\n" not in str(exc)
        else:
            assert s.patches


@FAST
@given(hostile, hostile, st.lists(hostile, max_size=4))
def test_fingerprint_is_stable_and_line_free(rule: str, fn: str, symbols: list[str]) -> None:
    a = Finding(rule, "n", "error", fn, "a.c", 1, "m", symbols=tuple(symbols))
    b = Finding(rule, "n", "error", fn, "b.c", 99, "other", symbols=tuple(symbols))
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 20 and int(a.fingerprint, 16) >= 0


@FAST
@given(hostile)
def test_inert_leaves_no_control(text: str) -> None:
    out = inert(text)
    assert not any((ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F for c in out)
    out.encode("utf-8")  # printable on a UTF-8 terminal


@st.composite
def reports(draw: st.DrawFn) -> object:
    from reviewer.scan import ContextChange, PatchReport, ScanReport
    from reviewer.vcs.git import CommitInfo

    def finding() -> Finding:
        return Finding(draw(hostile), draw(hostile), draw(st.sampled_from(["error", "note"])),
                       draw(hostile), draw(hostile), draw(st.integers(0, 10**6)), draw(hostile),
                       draw(hostile), tuple(draw(st.lists(hostile, max_size=3))),
                       (draw(hostile),), (Related(draw(hostile), 1, draw(hostile)),),
                       (draw(hostile),))

    patches = []
    for _ in range(draw(st.integers(0, 2))):
        c = CommitInfo("0" * 40, "1" * 40, draw(hostile), draw(hostile), draw(hostile),
                       "2024", draw(hostile), False)
        p = PatchReport(c, draw(st.lists(hostile, max_size=3)))
        p.new = [finding() for _ in range(draw(st.integers(0, 2)))]
        p.fixed = [finding() for _ in range(draw(st.integers(0, 1)))]
        p.excerpts = {f.fingerprint: [(1, draw(hostile))] for f in p.new}
        p.context_changes = [ContextChange(draw(hostile), draw(hostile), 1, [draw(hostile)],
                                           [], {}, draw(st.booleans()))]
        p.skipped = draw(st.sampled_from(["", "merge commit"]))
        patches.append(p)
    return ScanReport(draw(hostile), draw(hostile), "b", "nobuild", patches,
                      [finding()], [draw(hostile)])


@FAST
@given(reports())
def test_report_renders_inert_in_every_format(report: object) -> None:
    from reviewer.report.render import render
    from reviewer.report.sarif import sarif_document
    from reviewer.report.scan import scan_document
    from reviewer.scan import ScanReport

    assert isinstance(report, ScanReport)
    doc = scan_document(report, show_preexisting=True)
    json.dumps(doc)
    json.dumps(sarif_document(report))
    for name in ("scan.txt.j2", "scan.md.j2", "scan.html.j2"):
        out = render(name, doc=doc, show_preexisting=True, max_contexts=10)
        out.encode("utf-8")
        assert "\x1b" not in out and "\x9b" not in out and "\r" not in out
        if name != "scan.txt.j2":
            assert "<script>" not in out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20,
)
entries = st.lists(st.one_of(
    json_values,
    st.fixed_dictionaries({"file": json_values | st.text(max_size=20)},
                          optional={"directory": json_values | st.just("/tmp"),
                                    "command": st.text(max_size=60) | json_values,
                                    "arguments": st.lists(json_values, max_size=5)}),
), max_size=5)


@FAST
@given(st.one_of(entries, json_values, st.binary(max_size=200)))
def test_compile_db_reading_raises_only_user_errors(data: object) -> None:
    from reviewer.extract.flags import read_compile_db

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "compile_commands.json"), "wb") as fh:
            fh.write(data if isinstance(data, bytes) else json.dumps(data).encode())
        try:
            db = read_compile_db(d)
        except UserError as exc:
            assert "\n" not in str(exc)
            return
        for entry in db.values():
            assert all(isinstance(a, str) for a in entry.args)
            assert entry.args[-1] == "-Wno-unknown-warning-option"


_C_PIECES = st.sampled_from([
    "#define A(x) (x)\n", "#if X\n", "#endif\n", "#include \"a.h\"\n", "int f(int a);\n",
    "struct S {\n int a;\n void (*cb)(void *);\n};\n", "typedef struct S S;\n",
    "static inline int g(void) { return f(1); }\n", "enum E { E1, E2 = 3 };\n",
    "/* comment ", "*/\n", "// line\n", "\"str;{\"", "{", "}", ";", "(", ")", "\\\n",
    "G_DEFINE_AUTOPTR_CLEANUP_FUNC(S, g);\n", "\n",
])


@FAST
@given(st.lists(_C_PIECES, max_size=30), st.lists(_C_PIECES, max_size=30),
       st.text(max_size=200))
def test_header_delta_never_raises(a: list[str], b: list[str], noise: str) -> None:
    """Any pair of header texts, well formed or not: names, None, never an
    exception; the same text twice is no change."""
    from reviewer.extract.delta import changed_names, declares_functions, line_map, macros

    old, new = "".join(a), "".join(b) + noise
    got = changed_names(old, new)
    assert got is None or isinstance(got, frozenset)
    assert changed_names(new, new) == frozenset()
    declares_functions(old, new)
    macros(new)
    m = line_map(old, new)
    assert all(1 <= k <= old.count("\n") + 1 and 1 <= v <= new.count("\n") + 1
               for k, v in m.items())
