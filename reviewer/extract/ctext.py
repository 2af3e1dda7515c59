"""Reading C source text as written, where libclang's tokens are not trustworthy.

libclang reports the extent of a macro-made expression in terms of the macro's
definition, so tokenising it returns the wrong text (DOMAIN.md). Instead the
extractor asks libclang for the *file location* of a node (where it is written, or
where the macro was expanded) and reads the call, condition or declaration from
the file's own bytes with this small scanner. It knows comments, strings,
character literals and balanced brackets, which is all that is needed.
"""

from __future__ import annotations

import re

_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_SPACE = re.compile(rb"(?:\s+|/\*.*?\*/|//[^\n]*)+", re.S)
_COMMENTS = re.compile(rb"/\*.*?\*/|//[^\n]*", re.S)
_WS = re.compile(r"\s+")


def skip_space(buf: bytes, pos: int) -> int:
    m = _SPACE.match(buf, pos)
    return m.end() if m else pos


def ident_at(buf: bytes, pos: int) -> str:
    m = _IDENT.match(buf, pos)
    return m.group().decode("ascii") if m else ""


def _skip_literal(buf: bytes, pos: int) -> int:
    quote = buf[pos]
    i = pos + 1
    n = len(buf)
    while i < n:
        c = buf[i]
        if c == 0x5C:  # backslash
            i += 2
            continue
        if c == quote or c == 0x0A:
            return i + 1
        i += 1
    return n


def balanced(buf: bytes, pos: int, limit: int = 20000) -> tuple[list[str], int] | None:
    """Split the bracketed group starting at buf[pos] == '(' into top-level,
    comma-separated pieces. Returns (pieces, end offset after ')') or None."""
    if pos >= len(buf) or buf[pos] != 0x28:
        return None
    depth = 0
    pieces: list[str] = []
    start = pos + 1
    i = pos
    n = min(len(buf), pos + limit)
    while i < n:
        c = buf[i]
        if c in (0x22, 0x27):  # " '
            i = _skip_literal(buf, i)
            continue
        if c == 0x2F and i + 1 < n and buf[i + 1] in (0x2A, 0x2F):  # comment
            m = _SPACE.match(buf, i)
            i = m.end() if m else i + 1
            continue
        if c in (0x28, 0x5B, 0x7B):
            depth += 1
        elif c in (0x29, 0x5D, 0x7D):
            depth -= 1
            if depth == 0:
                piece = clean(buf[start:i])
                if piece or pieces:
                    pieces.append(piece)
                return pieces, i + 1
        elif c == 0x2C and depth == 1:
            pieces.append(clean(buf[start:i]))
            start = i + 1
        i += 1
    return None


def clean(raw: bytes) -> str:
    """Source text to a one-line string: comments dropped, whitespace collapsed."""
    text = _COMMENTS.sub(b" ", raw).decode("utf-8", "replace")
    return _WS.sub(" ", text).strip()


def call_at(buf: bytes, pos: int) -> tuple[str, list[str]] | None:
    """Read a call (or macro invocation) written at `pos`.

    Returns (head, args): head is the identifier directly before the argument
    list (the callee, a field name, or a macro name), args the argument texts.
    Grouping parentheses before the argument list, as in `(*fn)(x)`, are skipped.
    """
    n = len(buf)
    i = pos
    head = ""
    prev_ok = False  # may the next '(' open an argument list?
    for _ in range(64):
        i = skip_space(buf, i)
        if i >= n:
            return None
        c = buf[i]
        if c == 0x28:  # (
            if prev_ok:
                got = balanced(buf, i)
                return (head, got[0]) if got else None
            got = balanced(buf, i)
            if not got:
                return None
            idents = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", ", ".join(got[0]))
            head = idents[-1] if idents else ""
            i = got[1]
            prev_ok = True
            continue
        m = _IDENT.match(buf, i)
        if m:
            head = m.group().decode("ascii")
            i = m.end()
            prev_ok = True
            continue
        if buf.startswith(b"->", i):
            i += 2
            prev_ok = False
            continue
        if c in (0x2E, 0x2A, 0x26):  # . * &
            i += 1
            prev_ok = False
            continue
        if c == 0x5B:  # [ ... ]
            depth = 0
            while i < n:
                if buf[i] == 0x5B:
                    depth += 1
                elif buf[i] == 0x5D:
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
            prev_ok = True
            continue
        return None
    return None


def keyword_condition(buf: bytes, pos: int, keyword: str) -> str | None:
    """The parenthesised condition after `keyword` written at pos (if/while/switch)."""
    if ident_at(buf, pos) != keyword:
        return None
    i = skip_space(buf, pos + len(keyword))
    got = balanced(buf, i)
    if not got:
        return None
    return ", ".join(got[0])


def for_parts(buf: bytes, pos: int) -> tuple[bool, bool, bool, str] | None:
    """For a `for (init; cond; inc)` written at pos: which parts are present, and
    the condition text. None when the statement was not written as `for`."""
    if ident_at(buf, pos) != "for":
        return None
    i = skip_space(buf, pos + 3)
    got = balanced(buf, i)
    if not got:
        return None
    inner = ", ".join(got[0])
    # Split on top-level ';' (balanced() already split commas; rejoin then split).
    depth = 0
    parts: list[str] = []
    cur: list[str] = []
    for ch in inner:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == ";" and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    if len(parts) != 3:
        return None
    return bool(parts[0]), bool(parts[1]), bool(parts[2]), parts[1]


_MARKERS = re.compile(rb"\b(coroutine_fn|coroutine_mixed_fn|no_coroutine_fn)\b")


def markers_before(buf: bytes, name_pos: int, start_pos: int) -> tuple[str, ...]:
    """Coroutine marker tokens written in a declaration, between its start and its
    name: the fallback when the markers did not expand to annotate attributes."""
    if start_pos < 0 or start_pos > name_pos:
        start_pos = max(0, name_pos - 400)
        # Stay inside this declaration: after the last ; } { or preprocessor line.
        seg = buf[start_pos:name_pos]
        cut = max(seg.rfind(b";"), seg.rfind(b"}"), seg.rfind(b"{"), seg.rfind(b"\n#"))
        if cut >= 0:
            start_pos += cut + 1
    seg = _COMMENTS.sub(b" ", buf[start_pos:name_pos])
    return tuple(sorted({m.group().decode() for m in _MARKERS.finditer(seg)}))
