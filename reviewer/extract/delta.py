"""Can a header change alter a TU's facts? A conservative, text-level answer.

A series that edits a widely included header (a new prototype in
include/io/channel.h, a field in migration.h) would otherwise re-parse every TU
that includes it, although most of them never name what changed. Here the old
and new texts of a header are split into top-level items (directives,
declarations, definitions; comments dropped); the items that differ give the
names the change declares or defines (for a struct, the members that changed).
A TU whose facts came from the old header can keep them when none of those
names is among the identifiers it can see: its main file's, and those reached
from them through the bodies of macros (a TU that uses WITH_BQL_HELD sees what
the macro expands to).

An #include the change adds is no change when it opens (looked up as the
compiler would, in the TU's include directories) a guarded header the TU had
entered before the header that now includes it.

Anything this module cannot attribute to names (a changed #if, a removed
#include, any other added one, an item with no name) answers None: parse
again. So does a changed name some #if of the TU's headers tests, directly or
through a macro, and a changed macro a declaration of those headers uses.
Line numbers of the facts located in a changed header are mapped from its old
lines to its new ones (line_map).
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from reviewer.extract.facts import Call, Function, Node, TUFacts
from reviewer.extract.pch import in_scope

_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.S)
_STRING = re.compile(r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'")
_INCLUDE = re.compile(r"#\s*include\s*([<\"])([^>\"]+)[>\"]")  # (delimiter, name)
_DEFINE = re.compile(r"#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)(.*)", re.S)
_INERT = str.maketrans({"{": "\x01", "}": "\x02", "(": "\x03", ")": "\x04", ";": "\x05",
                        "[": "\x06", "]": "\x07", ",": "\x0e"})
_PUNCT = re.compile(r"[()\[\]{};]")
_FN_POINTER = re.compile(r"\(\s*\*\s*([A-Za-z_]\w*)\s*\)")
_MACRO_CALL = re.compile(r"^[A-Za-z_]\w*\s*\(.*\)\s*;?$")
_DIRECTIVE_LINE = re.compile(r"^[ \t]*#[ \t]*([a-z]+)((?:[^\n]*\\\n)*[^\n]*)", re.M)
_KEYWORDS = frozenset((
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "_Bool", "_Complex", "_Static_assert",
    "bool", "__attribute__", "__typeof__", "typeof", "__inline__", "__restrict",
))


def strip_comments(text: str) -> str:
    """Comments removed (newlines kept, so lines still count); string and
    character literals kept as they are."""
    def repl(m: re.Match[str]) -> str:
        s = m.group(0)
        if s[0] in "\"'":
            # Kept, but with the punctuation items are split on made inert: a
            # '{' in a character literal is no block.
            return s.translate(_INERT)
        return "\n" * s.count("\n") if s.startswith("/*") else ""
    return _COMMENT.sub(repl, text)


def items(text: str) -> list[str]:
    """Top-level items, whitespace-normalised: each preprocessor directive
    (with its continuation lines), and each declaration or definition (up to
    its `;` at depth 0, or the `}` that closes a function body)."""
    return list(_items(text))


@functools.lru_cache(maxsize=256)
def _items(text: str) -> tuple[str, ...]:
    # Memoised by text: a scan asks about the same versions of a header for
    # each TU that includes it, in one version and the next. The threadify
    # scan reads 204 distinct texts: 64 entries missed 353 times, 256 miss
    # only the first reading of each.
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    body = False  # inside a function body at depth >= 1
    last = ""  # the last significant character at depth 0
    lines = strip_comments(text).split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("#"):
            directive = line
            while directive.endswith("\\") and i + 1 < len(lines):
                i += 1
                directive = directive[:-1] + " " + lines[i]
            out.append(" ".join(directive.split()))
            i += 1
            continue
        # Only brackets and `;` matter: the text between them goes in whole.
        pos = 0
        for m in _PUNCT.finditer(line):
            k = m.start()
            if k > pos:
                chunk = line[pos:k]
                cur.append(chunk)
                if depth == 0 and chunk.rstrip():
                    last = chunk.rstrip()[-1]
            pos = k + 1
            ch = line[k]
            cur.append(ch)
            if ch in "([{":
                if ch == "{" and depth == 0 and last == ")":
                    body = True
                depth += 1
            elif ch in ")]}":
                depth = max(0, depth - 1)
                if ch == "}" and depth == 0 and body:
                    body = False
                    _flush(cur, out)
                    last = ""
                    continue
            else:  # `;`
                if depth == 0:
                    _flush(cur, out)
                    last = ""
                    continue
            if depth == 0:
                last = ch
        if pos < len(line):
            chunk = line[pos:]
            cur.append(chunk)
            if depth == 0 and chunk.rstrip():
                last = chunk.rstrip()[-1]
        cur.append(" ")
        i += 1
    _flush(cur, out)
    return tuple(out)


def _flush(cur: list[str], out: list[str]) -> None:
    text = " ".join("".join(cur).split())
    cur.clear()
    if text and text != ";":
        out.append(text)


def _declared(item: str) -> set[str] | None:
    """The names one item declares or defines; None when it cannot say."""
    if item.startswith("#"):
        m = _DEFINE.match(item)
        if m:
            return {m.group(1)}
        if re.match(r"#\s*undef\s+([A-Za-z_]\w*)", item):
            return {item.split()[-1]}
        return None
    if _MACRO_CALL.match(item):
        # A macro invoked at the top level (G_DEFINE_AUTOPTR_CLEANUP_FUNC(T, f))
        # defines things named after its arguments. The macro itself is not
        # changed by one more use of it: a TU that uses it elsewhere (every
        # user of g_autoptr) is not concerned.
        args = set(_ID.findall(item[item.index("("):])) - _KEYWORDS
        return args or None
    names: set[str] = set(_FN_POINTER.findall(item))
    depth = 0
    pending = ""  # the last identifier seen at depth 0
    first = item.split()[0]
    for tok in re.findall(r"[A-Za-z_]\w*|\S", item):
        if tok in "([{":
            if tok in "([" and depth == 0 and pending:
                names.add(pending)  # a function (or a macro call), or an array, by name
            if tok == "{" and depth == 0 and pending and first in (
                    "struct", "union", "enum", "typedef"):
                names.add(pending)  # the tag
            depth += 1
            pending = ""
        elif tok in ")]}":
            depth = max(0, depth - 1)
            pending = ""
        elif tok in (";", "=", ",") and depth == 0:
            if pending:
                names.add(pending)
            pending = ""
        elif depth == 0 and _ID.fullmatch(tok):
            pending = tok
        elif depth == 0 and tok == "*":
            pending = ""  # `gchar *(*f)(void)`: gchar is the type, not a name
    if pending:
        names.add(pending)  # the last declarator: `} Name`, a typedef's name
    names -= _KEYWORDS
    return names or None


def _head_body(item: str) -> tuple[str, list[str]] | None:
    """A struct/union/enum definition as (text before its `{`, its members)."""
    if not re.match(r"(typedef\s+)?(struct|union|enum)\b", item):
        return None
    start = item.find("{")
    end = item.rfind("}")
    if start < 0 or end < start:
        return None
    body = item[start + 1:end]
    enum = bool(re.match(r"(typedef\s+)?enum\b", item))
    members: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in body:
        cur.append(ch)
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and (ch == ";" or (ch == "," and enum)):
            members.append("".join(cur).strip())
            cur = []
    if "".join(cur).strip():
        members.append("".join(cur).strip())
    return item[:start].strip() + " {} " + item[end + 1:].strip(), members


def _member_names(member: str) -> set[str]:
    """The names a struct member (every declarator of `int a, b;`) or an
    enumerator declares: the last identifier of each declarator outside
    brackets, attribute macros and bit widths, or the one in (*name)."""
    m = _FN_POINTER.search(member)
    if m:
        return {m.group(1)}
    out: set[str] = set()
    for part in _split_top(member.rstrip(";"), ","):
        flat = re.sub(r"\[[^\]]*\]|:[^,]*$|=.*$", "", part)
        flat = re.sub(r"\b[A-Z][A-Z0-9_]*\s*\([^()]*\)\s*$", "", flat.strip())
        ids = [t for t in _ID.findall(flat) if t not in _KEYWORDS]
        if ids:
            out.add(ids[-1])
    return out


def _split_top(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def changed_names(old: str | None, new: str | None,
                  brings: Callable[[str], frozenset[str] | None] | None = None
                  ) -> frozenset[str] | None:
    """Names whose declaration or definition differs between two versions of
    a header; None when some difference cannot be pinned to names.
    `brings(item)`: the names an `#include` item the change adds declares or
    defines in a TU (none for a header the TU included already: its guard
    makes it a no-op), None when that is unknown. Without it, an added
    #include is a change no name accounts for."""
    if old is None or new is None:
        return None
    a, b = items(old), items(new)
    gone: list[str] = []
    came: list[str] = []
    # In order: a declaration moved across an #if, or an #undef moved past a
    # use, is a change even though the same items remain.
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op != "equal":
            gone += a[i1:i2]
            came += b[j1:j2]
    names: set[str] = set()
    # A struct present in both versions: only its changed members count (all
    # of an enum's: inserting one renumbers those after it).
    heads_old: dict[str, list[str]] = {}
    heads_new: dict[str, list[str]] = {}
    for its, heads in ((gone, heads_old), (came, heads_new)):
        for it in its:
            hb = _head_body(it)
            if hb:
                if hb[0] in heads:
                    return None  # the same struct twice (#if branches): cannot tell
                heads[hb[0]] = hb[1]
    for head in heads_old.keys() & heads_new.keys():
        mo, mn = Counter(heads_old[head]), Counter(heads_new[head])
        if re.match(r"(typedef\s+)?enum\b", head):
            for member in (mo + mn).elements():
                names |= _member_names(member)
            continue
        for member in ((mo - mn) + (mn - mo)).elements():
            names |= _member_names(member)
    paired = heads_old.keys() & heads_new.keys()
    for it in gone + came:
        hb = _head_body(it)
        if hb and hb[0] in paired:
            continue
        if brings is not None and _INCLUDE.match(it) and it in came:
            more = brings(it)
            if more is None:
                return None
            names |= more
            continue
        if hb and re.match(r"(typedef\s+)?enum\b", hb[0]):
            for member in hb[1]:  # an enum added or removed: its enumerators too
                names |= _member_names(member)
        got = _declared(it)
        if got is None:
            if hb and re.match(r"(typedef\s+)?enum\b", hb[0]):
                continue  # anonymous: its enumerators are its names
            return None
        names |= got
    return frozenset(names)


@functools.lru_cache(maxsize=1024)
def top_and_layout(old: str | None, new: str | None) -> tuple[frozenset[str], frozenset[str]]:
    """Of what differs between two versions of a header: the names declared
    at file scope (not struct members: those belong to their struct; an
    enum's enumerators are file-scope names), and the tags and typedef names
    of the structs and unions whose members changed (their layout).
    Memoised by text: asked for each TU that includes the header."""
    a, b = Counter(items(old or "")), Counter(items(new or ""))
    gone = list((a - b).elements())
    came = list((b - a).elements())
    heads: dict[str, list[tuple[str, list[str]]]] = {}
    for it in gone + came:
        hb = _head_body(it)
        if hb:
            heads.setdefault(hb[0], []).append(hb)
    top: set[str] = set()
    layout: set[str] = set()
    for it in gone + came:
        if it.startswith("#") and not _DEFINE.match(it):
            continue
        hb = _head_body(it)
        if hb and re.match(r"(typedef\s+)?enum\b", hb[0]):
            for member in hb[1]:
                top |= _member_names(member)
        if hb and len(heads[hb[0]]) > 1 and not hb[0].startswith(("enum", "typedef enum")):
            layout |= _declared(hb[0] + ";") or set()  # the same struct, other members
            continue
        top |= _declared(hb[0] + ";" if hb else it) or set()
    return frozenset(top), frozenset(layout)


# Static assertions: a struct that grows fails `QEMU_BUILD_BUG_ON(sizeof(S) != 4)`
# in any file that names it, and errors are facts.
_ASSERTION = re.compile(
    r"\b(?:_Static_assert|static_assert|QEMU_BUILD_BUG\w*|G_STATIC_ASSERT\w*)\b")


@functools.lru_cache(maxsize=4096)
def asserts(text: str) -> bool:
    """Does a file's code (not its comments or #define bodies) hold a static
    assertion?"""
    return bool(_ASSERTION.search(_DIRECTIVES.sub("", _COMMENT.sub(" ", text))))


def declares_functions(old: str | None, new: str | None) -> bool:
    """Does the change touch a function declaration or definition? In a
    header in scope those are facts of every TU that includes it."""
    if old is None or new is None:
        return True
    a, b = Counter(items(old)), Counter(items(new))
    for it in ((a - b) + (b - a)).elements():
        if it.startswith("#") or _head_body(it) or _MACRO_CALL.match(it):
            continue
        flat = re.sub(r"\{.*\}", "{}", it)
        if "(" in flat.replace("(*", "")[:flat.find("{") if "{" in flat else None]:
            return True
    return False



def identifiers(text: str) -> set[str]:
    """The identifiers a file's code names: not those in comments, nor the
    words of its string and character literals ("inflate init failed" names
    no `init`: no macro or declaration can reach into a literal)."""
    return set(_ID.findall(_COMMENT.sub(" ", text)))


@functools.lru_cache(maxsize=4096)
def macros(text: str) -> dict[str, frozenset[str]]:
    """#define'd names with the identifiers of their bodies, all definitions
    of a name together, and those of the #if conditions around each (which
    one applies depends on those). A regular expression over the directive
    lines: this runs over every header a TU includes."""
    out: dict[str, set[str]] = {}
    conds: list[set[str]] = []  # identifiers of the enclosing #if/#elif lines
    for m in _DIRECTIVE_LINE.finditer(strip_comments(text)):  # comment words are no ids
        kind, rest = m.group(1), m.group(2)
        if kind in ("if", "ifdef", "ifndef"):
            conds.append(set(_ID.findall(rest)))
        elif kind == "elif" and conds:
            conds[-1] |= set(_ID.findall(rest))
        elif kind == "endif" and conds:
            conds.pop()
        elif kind == "define":
            d = _DEFINE.match("#define" + rest)
            if d:
                ids = out.setdefault(d.group(1), set())
                body = d.group(2)
                if '"' in body or "'" in body:
                    body = _STRING.sub(" ", body)  # a literal's words are no ids
                params: set[str] = set()
                if body.startswith("(") and ")" in body:  # function-like: its
                    # parameters are placeholders, not names it uses
                    params = set(_ID.findall(body[:body.index(")")])) | {"__VA_ARGS__"}
                    body = body[body.index(")") + 1:]
                ids.update(set(_ID.findall(body)) - params)
                for c in conds:
                    ids |= c
    # A keyword #defined (zlib's zconf.h defines `const` for pre-standard
    # compilers) is not followed: every type would reach its conditions.
    return {k: frozenset(v - {k}) for k, v in out.items() if k not in _KEYWORDS}


@functools.lru_cache(maxsize=4096)
def conditions(text: str) -> frozenset[str]:
    """The identifiers a file's #if, #ifdef, #ifndef and #elif lines test.
    Memoised by text, as macros(): a scan reads the same headers in each
    version, for each TU."""
    ids: set[str] = set()
    for m in _DIRECTIVE_LINE.finditer(strip_comments(text)):
        if m.group(1) in ("if", "ifdef", "ifndef", "elif"):
            ids.update(_ID.findall(m.group(2)))
    return frozenset(ids)


_DIRECTIVES = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.M)


@functools.lru_cache(maxsize=4096)
def code_ids(text: str) -> frozenset[str]:
    """The identifiers of a file outside its comments, literals and
    preprocessor directives: the names its declarations and code use."""
    return frozenset(_ID.findall(_DIRECTIVES.sub("", _COMMENT.sub(" ", text))))


@functools.lru_cache(maxsize=4096)
def declared_in(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(the macros a whole file defines, the names it declares: functions,
    variables, typedefs, tags): what could make a name in a header's
    function mean something else in one TU and not another. Memoised by
    text: a scan asks about the same headers in each version."""
    defined: set[str] = set()
    declared: set[str] = set()
    for it in items(text):
        if it.startswith("#"):
            m = _DEFINE.match(it)
            if m:
                defined.add(m.group(1))
        else:
            hb = _head_body(it)
            declared |= _declared(hb[0] + ";" if hb else it) or set()
    return frozenset(defined), frozenset(declared)


@functools.lru_cache(maxsize=4096)
def mentions(text: str) -> frozenset[str]:
    """Every name a file could declare or define: its code's identifiers and
    its macros (a cheap superset of declared_in, to skip most headers)."""
    return code_ids(text) | frozenset(macros(text))


_GUARD = re.compile(r"\s*#[ \t]*ifndef[ \t]+(\w+)[ \t]*\n[ \t]*#[ \t]*define[ \t]+(\w+)\b")


@functools.lru_cache(maxsize=4096)
def guard_macro(text: str) -> str:
    """The macro of a header's include guard (the whole file inside
    #ifndef G / #define G ... #endif), or ""."""
    t = strip_comments(text)
    m = _GUARD.match(t)
    if m and m.group(1) == m.group(2) and re.search(r"#[ \t]*endif\s*$", t):
        return m.group(1)
    return ""


def guarded(text: str) -> bool:
    """Does a header skip itself when included again: #pragma once, or an
    include guard?"""
    return bool(guard_macro(text)) or bool(
        re.search(r"^[ \t]*#[ \t]*pragma[ \t]+once\b", strip_comments(text), re.M))


@functools.lru_cache(maxsize=4096)
def macro_bodies(text: str) -> dict[str, str]:
    """Each function-like or object-like macro's body text (the last
    definition in the file)."""
    out: dict[str, str] = {}
    for m in _DIRECTIVE_LINE.finditer(strip_comments(text)):
        if m.group(1) == "define":
            d = _DEFINE.match("#define" + m.group(2))
            if d:
                body = d.group(2).replace("\\\n", " ")
                if body.startswith("(") and ")" in body:
                    body = body[body.index(")") + 1:]
                out[d.group(1)] = body.strip()
    return out


def _arg_in_body(body: str, callee: str, i: int) -> str | None:
    """The text of argument i of the only call to `callee` in a macro body."""
    starts = [m.end() for m in re.finditer(r"\b" + re.escape(callee) + r"\s*\(", body)]
    if len(starts) != 1:
        return None
    args = _split_top(_balanced_tail(body[starts[0]:]), ",")
    return args[i].strip() if i < len(args) else None


def _balanced_tail(text: str) -> str:
    """The text up to the `)` that closes a call whose `(` came just before."""
    depth = 0
    for k, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return text[:k]
            depth -= 1
    return text


@functools.lru_cache(maxsize=1024)
def macro_call_args(old: str | None, new: str | None) -> frozenset[str]:
    """The arguments of the top-level macro invocations that differ between
    two versions of a header. Memoised by text, as top_and_layout()."""
    a, b = Counter(items(old or "")), Counter(items(new or ""))
    out: set[str] = set()
    for it in ((a - b) + (b - a)).elements():
        if not it.startswith("#") and _MACRO_CALL.match(it):
            out |= set(_ID.findall(it[it.index("("):])) - _KEYWORDS
    return frozenset(out)


def visible(main_ids: set[str], macro_map: dict[str, frozenset[str]]) -> set[str]:
    """The identifiers a TU names, directly or through the macros it uses."""
    seen = set(main_ids)
    todo = [i for i in main_ids if i in macro_map]
    while todo:
        for x in macro_map.get(todo.pop(), ()):
            if x not in seen:
                seen.add(x)
                if x in macro_map:
                    todo.append(x)
    return seen


_STATEMENT = frozenset(("if", "for", "while", "do", "switch", "case", "default", "return",
                        "goto", "break", "continue", "else"))


@functools.lru_cache(maxsize=1024)
def body_fragment(text: str) -> bool:
    """Is a file statements rather than declarations (a piece of a function
    body that some function #includes)?"""
    for it in items(text):
        if not it.startswith("#"):
            first = re.match(r"[A-Za-z_]\w*|\{", it)
            if first and (first.group(0) in _STATEMENT or first.group(0) == "{"):
                return True
    return False


def _code_lines(text: str) -> list[str]:
    """A file's lines with each comment blanked out, same length (columns
    stay), and trailing blanks dropped: a line of code never matches its copy
    inside a comment, and a changed comment on a code line still counts."""
    def blank(m: re.Match[str]) -> str:
        t = m.group(0)
        return t if t[0] in "\"'" else re.sub(r"[^\n]", " ", t)
    return [ln.rstrip() for ln in _COMMENT.sub(blank, text).split("\n")]


def line_map(old: str, new: str) -> dict[int, int]:
    """Old line number -> new line number, for the lines of code both
    versions share."""
    out: dict[int, int] = {}
    a, b = _code_lines(old), _code_lines(new)
    raw_a, raw_b = old.split("\n"), new.split("\n")
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for i, j, n in sm.get_matching_blocks():
        for k in range(n):
            # A comment changed on a code line: the line's facts (a call's
            # column) may not be where they were.
            if raw_a[i + k] == raw_b[j + k] or not a[i + k]:
                out[i + k + 1] = j + k + 1
    return out


class Carrier:
    """Decides, for TUs whose cached facts came from the previous version of
    some headers, whether those facts still hold, and moves their header lines.
    One per run: header texts and macro tables are read once."""

    def __init__(self, root: str, scope: tuple[str, ...], previous: dict[str, bytes | None],
                 unsaved: dict[str, bytes] | None = None,
                 search: Callable[[str], tuple[tuple[str, ...], tuple[str, ...]]] | None = None
                 ) -> None:
        """search(main): the TU's include directories (flags.include_search);
        without it, include/ and the top of the tree."""
        self.root = root
        self.search = search
        self.unsaved = unsaved or {}
        self.scope = scope
        self.previous = previous
        self._text: dict[str, str | None] = {}
        self._macros: dict[str, dict[str, frozenset[str]]] = {}
        self._names: dict[tuple[object, ...], frozenset[str] | None] = {}
        self._lines: dict[str, dict[int, int]] = {}
        self._fn_change: dict[str, bool] = {}
        self._idmemo: dict[str, frozenset[str]] = {}
        self._bodies: dict[str, list[tuple[str, str]]] = {}  # macro -> (file, body)
        self._bodies_of: set[str] = set()  # the files in _bodies

    def text(self, path: str) -> str | None:
        if path not in self._text and path in self.unsaved:
            self._text[path] = self.unsaved[path].decode("utf-8", "replace")
        if path not in self._text:
            try:
                with open(path, "rb") as fh:
                    self._text[path] = fh.read().decode("utf-8", "replace")
            except OSError:
                self._text[path] = None
        return self._text[path]

    def _ids(self, path: str) -> set[str]:
        got = self._idmemo.get(path)
        if got is None:
            got = self._idmemo[path] = frozenset(identifiers(self.text(path) or ""))
        return set(got)

    def _body_ids(self, path: str) -> set[str]:
        return _ids_of_bodies(self.text(path) or "")

    def _old(self, path: str) -> str | None:
        data = self.previous.get(path)
        return None if data is None else data.decode("utf-8", "replace")

    def _rel(self, path: str) -> str:
        if (path + "/").startswith(self.root + "/"):
            return path[len(self.root) + 1:]
        return path

    def _in_scope(self, rel: str) -> bool:
        return in_scope(rel, self.scope)

    def carry(self, main: str, facts: TUFacts, includes: dict[str, str], changed: list[str]
              ) -> TUFacts | Splice | None:
        """The TU's facts with the changed headers' new version; a Splice when
        that holds except for the functions of changed headers in scope (their
        new facts come from another TU's parse); None when the change may
        alter them otherwise (then the TU is parsed again). `includes`: the
        files the TU included, in the order it first entered them."""
        names: set[str] = set()
        by_header: dict[str, frozenset[str]] = {}
        order = tuple(includes)
        pos = {p: i for i, p in enumerate(order)}
        dirs = self.search(main) if self.search is not None else None
        for path in changed:
            key = (path, order, dirs)
            if key not in self._names:
                def brings(item: str, path: str = path) -> frozenset[str] | None:
                    return frozenset() if self._no_op(path, item, pos, dirs) else None
                self._names[key] = changed_names(self._old(path), self.text(path), brings)
            got = self._names[key]
            if got is None:
                return None
            names |= got
            by_header[path] = got
        main_text = self.text(main)
        if main_text is None:
            return None
        macro_map: dict[str, frozenset[str]] = {}
        for inc in includes:
            if inc == main:
                continue
            table = self._macros.get(inc)
            if table is None:
                table = self._macros[inc] = macros(self.text(inc) or "")
            for name, ids in table.items():  # a name defined in several headers: all count
                macro_map[name] = macro_map[name] | ids if name in macro_map else ids
        if names:
            # A name the change defines or removes, tested by an #if of a
            # header the TU includes, directly or through the macros the #if
            # uses: that header may now declare something else.
            tested: set[str] = set()
            for inc in includes:
                tested |= conditions(self.text(inc) or "")
            if names & visible(tested, macro_map):
                return None
            # A macro the change defines or removes, used in a declaration of
            # a header the TU includes (`int COND_ATTR cond_fn(void);`): what
            # the TU's calls know of their callees may change.
            changed_macros: set[str] = set()
            for path in changed:
                changed_macros |= self._macro_names(path)
            changed_macros &= names
            if changed_macros and any(not self._decl_ids(inc).isdisjoint(changed_macros)
                                      for inc in includes):
                return None
            # A changed file-scope name that another file of the TU names
            # (a prototype it also declares, a typedef behind a member it
            # declares: `typedef struct A Foo;` becoming `struct B`), or a
            # struct whose members changed named next to a static assertion.
            for path in changed:
                top, layout = top_and_layout(self._old(path), self.text(path))
                for inc in includes:
                    if inc == path:
                        continue
                    ids = self._decl_ids(inc)
                    if not ids.isdisjoint(top) and inc != main:
                        return None
                    if (layout and not ids.isdisjoint(layout)
                            and asserts(self.text(inc) or "")):
                        return None
        # The functions a header in scope declares and defines are facts of
        # every TU that includes it: where the change touches those, that part
        # of the facts is replaced as a whole (a Splice), and what the header's
        # bodies name does not count as seen below.
        spliced: set[str] = set()
        for path in changed:
            if self._in_scope(self._rel(path)):
                if path not in self._fn_change:
                    self._fn_change[path] = declares_functions(self._old(path), self.text(path))
                if self._fn_change[path]:
                    spliced.add(path)
        spliced_rel = frozenset(self._rel(p) for p in spliced)
        # What the TU names, and what its facts name: the functions of other
        # headers in scope call and take types the main file may never spell.
        named = identifiers(main_text)
        for c in facts.calls:
            if c.caller_file in spliced_rel:
                continue
            named.update(_ID.findall(c.callee))
            if c.macro:
                named.add(c.macro)
        changed_set = set(changed)
        for inc in includes:
            if inc == main or inc in spliced or not self._in_scope(self._rel(inc)):
                continue
            # The functions of a header in scope are facts of this TU too: what
            # their bodies name (macros, constants) counts as seen. A changed
            # header in scope contributes its function definitions' names.
            if inc not in changed_set:
                named |= self._ids(inc)
            else:
                named |= self._body_ids(inc)
        for f in facts.functions:
            if f.file in spliced_rel:
                continue
            # A macro the change defines renames the prototypes after it too
            # (those of a header in scope are facts of this TU).
            named.add(f.name)
            for p in f.params:
                named.add(p.name)
                named.update(_ID.findall(p.type))
        seen = visible(named, macro_map)
        if names & seen:
            return None
        # A macro invoked at the top level that the change adds or removes
        # (CORO_DECL(xyz)) may declare names pasted from its arguments
        # (xyz_co): any name the TU sees that holds one of them counts.
        stems: set[str] = set()
        for path in changed:
            stems |= macro_call_args(self._old(path), self.text(path))
        if stems and any(stem in x for x in seen for stem in stems):
            return None
        # __COUNTER__ counts its expansions across the TU: code the change
        # adds or removes that expands it (through a macro, too) renumbers
        # those after it. A #define that mentions it expands nothing.
        if "__COUNTER__" in seen:
            for path in changed:
                if "__COUNTER__" in visible(
                        changed_item_ids(self._old(path), self.text(path)), macro_map):
                    return None
        relevant: frozenset[str] = frozenset()
        if spliced:
            # What the spliced headers' bodies name, old and new, still counts
            # for the names the other changed headers change: their new part
            # comes from a TU that may not include those headers.
            other = set().union(*(by_header[p] for p in changed if p not in spliced))
            bodies: set[str] = set()
            for path in spliced:
                bodies |= self._body_ids(path) | _ids_of_bodies(self._old(path) or "")
            if other & visible(bodies, macro_map):
                return None
            # The names the headers' new functions and the change's other
            # items use, through the macros this TU has: another TU gives
            # their new facts only if these mean the same there
            # (Carrier.same_meaning). A changed #define counts through the
            # bodies that use it.
            used: set[str] = set()
            for path in spliced:
                used |= self._body_ids(path) | changed_item_ids(self._old(path), self.text(path))
            relevant = frozenset(visible(used, macro_map) - _KEYWORDS)
            if relevant & _TU_DEPENDENT:
                return None
            relevant_macros = relevant & macro_map.keys()
        maps: dict[str, dict[int, int]] = {}
        for path in changed:
            rel = self._rel(path)
            if path in spliced:
                continue
            if rel not in self._lines:
                self._lines[rel] = line_map(self._old(path) or "", self.text(path) or "")
            maps[rel] = self._lines[rel]
        if any(not p.endswith(".h") or body_fragment(self._old(p) or "")
               or body_fragment(self.text(p) or "") for p in changed if self._rel(p) in maps
               ) or any(c.file in maps and c.caller_file and c.caller_file != c.file
                        for c in facts.calls):
            # Perhaps statements some function #includes into its body
            # (x.inc, x.c.inc; a .h of statements, or one holding a call made
            # from another file's function): their facts carry no file of
            # their own, and would be moved by the wrong map.
            return None
        try:
            moved = _moved(facts, maps, functools.partial(self._line_arg, includes))
        except KeyError:
            return None  # a fact on a line that changed
        if spliced:
            return Splice(spliced_rel, moved, main, frozenset(includes), relevant,
                          frozenset(relevant_macros))
        return moved

    def _no_op(self, includer: str, item: str, pos: dict[str, int],
               dirs: tuple[tuple[str, ...], tuple[str, ...]] | None) -> bool:
        """Is an #include added to `includer` a no-op in a TU that first
        entered its files in the order `pos` gives? It is when it opens a
        header with an include guard that the TU entered before `includer`:
        the guard skips it. One the TU entered later would now come earlier,
        ahead of what it may test or redefine; one the TU never had brings
        new declarations (neither is told apart here: the TU is parsed)."""
        found = self._resolve(includer, item, dirs)
        return (found is not None and found in pos and includer in pos
                and pos[found] < pos[includer] and guarded(self.text(found) or ""))

    def _resolve(self, src: str, item: str,
                 dirs: tuple[tuple[str, ...], tuple[str, ...]] | None) -> str | None:
        """The file an #include in `src` opens, searched as the compiler
        searches: the includer's directory first for "...", then the flags'."""
        m = _INCLUDE.match(item)
        if m is None:
            return None
        if dirs is None:
            dirs = ((), (os.path.join(self.root, "include"), self.root))
        order = ([os.path.dirname(src), *dirs[0]] if m.group(1) == '"' else []) + list(dirs[1])
        for d in order:
            c = os.path.normpath(os.path.join(d, m.group(2)))
            if c in self.unsaved or os.path.isfile(c):
                return c
        return None  # maybe in the compiler's own directories: unknown here

    def _macro_names(self, path: str) -> frozenset[str]:
        """The macros a changed header defines in its old or new version."""
        return frozenset(macros(self._old(path) or "")) | frozenset(macros(self.text(path) or ""))

    def _decl_ids(self, path: str) -> frozenset[str]:
        return code_ids(self.text(path) or "")

    def _line_arg(self, includes: dict[str, str], c: Call, i: int) -> bool:
        """Does argument i of the call `c.macro` expands to come from
        __LINE__ written in the body of that macro, or of a macro it uses
        (DECLARE_OBJ_CHECKERS -> ... -> OBJECT_CHECK ->
        object_dynamic_cast_assert(..., __FILE__, __LINE__, __func__))? Every
        body reached that calls the callee must say so."""
        # The macros of every file read so far, indexed once per run (each TU
        # asking would otherwise read its few hundred headers' tables again).
        for inc in includes:
            if inc not in self._bodies_of:
                self._bodies_of.add(inc)
                for name, body in macro_bodies(self.text(inc) or "").items():
                    self._bodies.setdefault(name, []).append((inc, body))

        # In the TU's include order, as a table of its own would have them:
        # the walk below stops after 64 names, and which definition of a name
        # comes first must not depend on the TUs asked before this one.
        rank = {p: k for k, p in enumerate(includes)}

        def defs(name: str) -> list[str]:
            return [body for _, body in sorted((rank[path], body) for path, body
                                               in self._bodies.get(name, ()) if path in rank)]
        seen: set[str] = set()
        todo = [c.macro]
        found: list[str | None] = []
        call = re.compile(r"\b" + re.escape(c.callee) + r"\s*\(")
        while todo and len(seen) < 64:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for body in defs(name):
                if call.search(body):
                    found.append(_arg_in_body(body, c.callee, i))
                todo += [x for x in _ID.findall(body) if x not in seen and defs(x)]
        return bool(found) and all(a == "__LINE__" for a in found)

    def same_meaning(self, a: Splice, b: Splice) -> bool:
        """Do the names the change uses mean the same in both TUs? The files
        only one of them includes, and either main file, define none of them
        as macros and declare none of those that are not macros (a macro's
        name in a declaration is a use of it: G_DEFINE_AUTOPTR_CLEANUP_FUNC(T,
        f)); nor do they define a macro that an #if around a declaration of
        one of them tests (which declaration holds may differ)."""
        relevant = a.relevant | b.relevant
        if not relevant:
            return True
        tested: set[str] = set()
        for path in a.includes | b.includes:
            t = self.text(path) or ""
            if relevant.isdisjoint(mentions(t)):
                continue
            defined, declared = declared_in(t)
            if not relevant.isdisjoint(defined) or not relevant.isdisjoint(declared):
                tested |= conditions(t) - {guard_macro(t)}  # the guard selects the file only
        macro_names = relevant | tested
        plain = relevant - a.macros - b.macros
        for path in (a.includes ^ b.includes) | {a.main, b.main}:
            t = self.text(path) or ""
            m = mentions(t)
            if macro_names.isdisjoint(m) and plain.isdisjoint(m):
                continue
            defined, declared = declared_in(t)
            if defined & macro_names or declared & plain:
                return False
        return True


# Expand differently in each TU whatever the header says: a header's facts
# that use one cannot come from another TU. (__FILE__ is the path the TU
# included the header by: splice_class groups TUs by facts that show it.)
_TU_DEPENDENT = frozenset(("__COUNTER__", "__INCLUDE_LEVEL__", "__BASE_FILE__",
                           "__TIMESTAMP__", "__DATE__", "__TIME__"))


def _ids_of_bodies(text: str) -> set[str]:
    out: set[str] = set()
    for it in items(text):
        if not it.startswith("#") and re.search(r"\)\s*\{", it):
            out.update(_ID.findall(it))
    return out


def changed_item_ids(old: str | None, new: str | None) -> set[str]:
    """The identifiers of the declarations and definitions that differ
    between two versions (a #define is followed through what uses it)."""
    a, b = Counter(items(old or "")), Counter(items(new or ""))
    out: set[str] = set()
    for it in ((a - b) + (b - a)):
        if not it.startswith("#"):
            out.update(_ID.findall(it))
    return out


@dataclass(frozen=True)
class Splice:
    """A TU's facts that still hold once the functions of the headers in
    `headers` (root-relative, in scope) are replaced by their new version,
    which another TU's parse gives (splice_headers)."""

    headers: frozenset[str]
    facts: TUFacts  # the old facts, lines of the other changed headers moved
    main: str = ""
    includes: frozenset[str] = frozenset()  # absolute paths, the main file's too
    relevant: frozenset[str] = frozenset()  # names the change uses, through macros
    macros: frozenset[str] = frozenset()  # those of them this TU has as macros


def splice_class(splice: Splice) -> tuple[object, ...] | None:
    """TUs of one class had the same facts for the headers' functions (the
    same text can mean something else in another TU: __FILE__ is the path the
    TU included it by), so one TU's new facts for them may serve the others
    (Carrier.same_meaning decides, per TU). None: that part cannot be cut out
    of the TU's facts, or the change uses __FILE__ and the old facts do not
    show how this TU spells the header's path (parse it)."""
    sec = _section(splice.facts, splice.headers)
    if sec is None:
        return None
    if "__FILE__" in splice.relevant and not any(
            v is not None and v.startswith('"') and v.endswith(os.path.basename(h) + '"')
            for c in sec.calls for v in c.values for h in splice.headers):
        return None
    return (splice.headers, sec.functions, sec.calls)


@dataclass(frozen=True)
class _Section:
    """The facts of some headers' functions within a TU: the functions as a
    contiguous run of TUFacts.functions, and their calls, with the bodies'
    call indices counted within `calls`."""

    start: int
    end: int
    functions: tuple[Function, ...]
    calls: tuple[Call, ...]

    def same(self, other: _Section) -> bool:
        return self.functions == other.functions and self.calls == other.calls


def _renumbered(fn: Function, index: dict[int, int]) -> Function:
    """fn with its body's call indices mapped (KeyError for one not mapped)."""
    def node(n: Node) -> Node:
        return replace(n, call=index[n.call] if n.call >= 0 else n.call,
                       branches=tuple(tuple(node(x) for x in br) for br in n.branches))
    if not fn.body:
        return fn
    return replace(fn, body=tuple(node(n) for n in fn.body))


def _section(facts: TUFacts, headers: frozenset[str]) -> _Section | None:
    """The headers' part of a TU's facts, or None when it cannot be cut out
    cleanly: its functions not one run, a field store, object reference or
    diagnostic located in the headers (their place among the TU's is not
    recorded), or a call index out of place."""
    idx = [i for i, f in enumerate(facts.functions) if f.file in headers]
    if not idx or idx != list(range(idx[0], idx[-1] + 1)):
        return None
    if (any(x.file in headers for x in facts.field_stores)
            or any(x.file in headers for x in facts.object_refs)
            or any(x.file in headers for x in facts.diagnostics)):
        return None
    calls = [i for i, c in enumerate(facts.calls) if c.caller_file in headers]
    local = {g: i for i, g in enumerate(calls)}
    try:
        fns = tuple(_renumbered(f, local) for f in facts.functions[idx[0]:idx[-1] + 1])
    except KeyError:
        return None
    return _Section(idx[0], idx[-1] + 1, fns, tuple(facts.calls[i] for i in calls))


def _with_section(facts: TUFacts, old: _Section, new: _Section) -> TUFacts | None:
    """facts with section `old` replaced by `new`. A TU's calls come in the
    order of the functions that make them, so the new section's calls go
    after those of the functions before it; None if that order does not hold."""
    before = {(f.file, f.name) for f in facts.functions[:old.start] if f.is_definition}
    after = {(f.file, f.name) for f in facts.functions[old.end:] if f.is_definition}
    headers = {f.file for f in old.functions}
    kept = [i for i, c in enumerate(facts.calls) if c.caller_file not in headers]
    n = 0  # how many of the kept calls are made by the functions before
    for j, i in enumerate(kept):
        who = (facts.calls[i].caller_file, facts.calls[i].caller)
        if who in before:
            if j != n:
                return None
            n += 1
        elif who not in after:
            return None
    index = {g: (i if i < n else i + len(new.calls)) for i, g in enumerate(kept)}
    shift = {i: n + i for i in range(len(new.calls))}
    try:
        functions = (
            *(_renumbered(f, index) for f in facts.functions[:old.start]),
            *(_renumbered(f, shift) for f in new.functions),
            *(_renumbered(f, index) for f in facts.functions[old.end:]),
        )
    except KeyError:
        return None
    calls = (*(facts.calls[i] for i in kept[:n]), *new.calls, *(facts.calls[i] for i in kept[n:]))
    return replace(facts, functions=functions, calls=calls)


@dataclass(frozen=True)
class HeaderFacts:
    """What a change to some headers in scope did to their functions' facts,
    learnt from one TU parsed again (the representative): its old and new
    section, and how its `addressed` counts moved."""

    old: _Section
    new: _Section
    addressed: tuple[tuple[str, int], ...]


def header_facts(splice: Splice, fresh: TUFacts) -> HeaderFacts | None:
    """From a TU that was a Splice and has been parsed again: the change to
    the headers' facts, checked by rebuilding its fresh facts from its old
    ones (None if that does not give them exactly: something else changed)."""
    old = _section(splice.facts, splice.headers)
    new = _section(fresh, splice.headers)
    if old is None or new is None or fresh.failed:
        return None
    rebuilt = _with_section(splice.facts, old, new)
    if rebuilt is None or replace(rebuilt, addressed=fresh.addressed) != fresh:
        return None
    moved = Counter(dict(fresh.addressed))
    moved.subtract(dict(splice.facts.addressed))
    return HeaderFacts(old, new, tuple(sorted((k, v) for k, v in moved.items() if v)))


def splice_headers(splice: Splice, change: HeaderFacts) -> TUFacts | None:
    """A TU's new facts from its old ones and the representative's change,
    when its old section of the headers equals the representative's (the
    headers meant the same in both TUs); None otherwise."""
    old = _section(splice.facts, splice.headers)
    if old is None or not old.same(change.old):
        return None
    got = _with_section(splice.facts, old, change.new)
    if got is None:
        return None
    counts = Counter(dict(got.addressed))
    counts.update(dict(change.addressed))
    if any(v < 0 for v in counts.values()):
        return None
    return replace(got, addressed=tuple(sorted((k, v) for k, v in counts.items() if v)))


def _moved_call(c: Call, m: dict[int, int],
                line_arg: Callable[[Call, int], bool] = lambda c, i: False) -> Call:
    """A call on a moved line. An integer argument naming one of the few
    lines from the call on may have come from __LINE__, and then moves with
    it; or be a constant. Where that line did not move, nothing changes.
    Where it did, the value is moved only when `__LINE__` is written as that
    very argument (`bql_lock_impl(__FILE__, __LINE__)`), or in the body of
    the macro the call was written as (`line_arg`: bql_lock(), assert()).
    Any other case (a macro that may pass __LINE__ or a constant: DEV_SET(s,
    24), `#define HERE __LINE__, 24`) cannot be told from the facts, and the
    TU is parsed (KeyError)."""
    line = m[c.line] if c.line > 0 else c.line
    aligned = not c.macro and len(c.args) == len(c.values)
    values: list[str | None] = []
    for i, v in enumerate(c.values):
        if v is None or not v.isdigit() or not c.line <= int(v) <= c.line + 20 \
                or m.get(int(v)) == int(v):
            values.append(v)
            continue
        if (aligned and c.args[i].strip() == "__LINE__") or (c.macro and line_arg(c, i)):
            values.append(str(m[int(v)]))  # KeyError: that line changed
            continue
        raise KeyError(v)
    return replace(c, line=line, values=tuple(values))


def _moved(facts: TUFacts, maps: dict[str, dict[int, int]],
           line_arg: Callable[[Call, int], bool] = lambda c, i: False) -> TUFacts:
    """The facts with the lines of the changed headers moved (KeyError when a
    fact sits on a changed line)."""
    def ln(file: str, line: int) -> int:
        m = maps.get(file)
        return line if m is None or line <= 0 else m[line]

    def node(n: Node, file: str) -> Node:
        return replace(n, line=ln(file, n.line),
                       branches=tuple(tuple(node(x, file) for x in br) for br in n.branches))

    if not any(f.file in maps for f in facts.functions) and not any(
            c.file in maps for c in facts.calls) and not any(
            d.file in maps for d in facts.diagnostics) and not any(
            s.file in maps for s in facts.field_stores) and not any(
            r.file in maps for r in facts.object_refs):
        return facts
    return replace(
        facts,
        functions=tuple(
            replace(f, line=ln(f.file, f.line), end_line=ln(f.file, f.end_line),
                    body=tuple(node(n, f.file) for n in f.body)) if f.file in maps else f
            for f in facts.functions),
        calls=tuple(_moved_call(c, maps[c.file], line_arg) if c.file in maps else c
                    for c in facts.calls),
        field_stores=tuple(replace(s, line=ln(s.file, s.line)) if s.file in maps else s
                           for s in facts.field_stores),
        object_refs=tuple(replace(r, line=ln(r.file, r.line)) if r.file in maps else r
                          for r in facts.object_refs),
        diagnostics=tuple(replace(d, line=ln(d.file, d.line)) if d.file in maps else d
                          for d in facts.diagnostics),
    )
