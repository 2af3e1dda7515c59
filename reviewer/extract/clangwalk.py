"""The libclang pass: one translation unit in, TUFacts out.

This is the only module that imports clang.cindex. It walks the top-level cursors
of the main file (and of headers in scope, for their static inline functions),
and inside each function definition builds the body IR (reviewer.extract.facts.Node)
with the calls, guard scopes, conditions and control structure a path-sensitive
analysis needs.

Two libclang habits shape the code (DOMAIN.md, measured on QEMU):
- the extent of a macro-made expression points into the macro definition, so
  text is read from the file at clang_getFileLocation() (where the node is
  written, or where its macro was expanded) with reviewer.extract.ctext;
- `true`/`false`/`NULL` arguments come from macros; their values come from the
  AST (implicit conversion to _Bool, evaluation of integer constants).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import clang.cindex as ci

from reviewer.extract import ctext
from reviewer.extract.facts import (
    Call,
    Diagnostic,
    FieldStore,
    Function,
    Node,
    ObjectRef,
    Param,
    TUFacts,
)

# Changing what this module records for the same source? Bump
# reviewer.extract.facts.EXTRACTOR_VERSION so cached facts are rebuilt.

CK = ci.CursorKind
_lib = ci.conf.lib

_PARSE_OPTIONS = 0x200  # CXTranslationUnit_KeepGoing: a missing header is not the end
_FOR_SERIALIZATION = 0x10  # CXTranslationUnit_ForSerialization: the TU is saved as a PCH
_ASSIGN = 22  # CXBinaryOperator_Assign
_EVAL_INT = 1  # CXEval_Int


def _setup_ctypes() -> None:
    # Entry points the Python bindings do not wrap (or wrap without spelling/file
    # locations); declared once here. The file comes back as a plain address
    # (c_void_p): it is the key of the per-TU file name memo, and converting a
    # c_object_p with ctypes.cast cost ~1 µs per location.
    _lib.clang_getFileLocation.argtypes = [
        ci.SourceLocation,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(ctypes.c_uint),
        ctypes.POINTER(ctypes.c_uint),
        ctypes.POINTER(ctypes.c_uint),
    ]
    _lib.clang_getFileLocation.restype = None
    _lib.clang_Location_isFromMainFile.argtypes = [ci.SourceLocation]
    _lib.clang_Location_isFromMainFile.restype = ctypes.c_int
    _lib.clang_getCursorBinaryOperatorKind.argtypes = [ci.Cursor]
    _lib.clang_getCursorBinaryOperatorKind.restype = ctypes.c_int
    _lib.clang_Cursor_Evaluate.argtypes = [ci.Cursor]
    _lib.clang_Cursor_Evaluate.restype = ctypes.c_void_p
    _lib.clang_EvalResult_getKind.argtypes = [ctypes.c_void_p]
    _lib.clang_EvalResult_getKind.restype = ctypes.c_int
    _lib.clang_EvalResult_getAsLongLong.argtypes = [ctypes.c_void_p]
    _lib.clang_EvalResult_getAsLongLong.restype = ctypes.c_longlong
    _lib.clang_EvalResult_dispose.argtypes = [ctypes.c_void_p]
    _lib.clang_EvalResult_dispose.restype = None


_setup_ctypes()


class _String(ctypes.Structure):
    """A CXString, disposed of by hand (the bindings' _CXString disposes of
    itself and decodes as strict UTF-8)."""

    _fields_ = [("data", ctypes.c_void_p), ("flags", ctypes.c_uint)]


# Fresh function objects (CDLL[name]), so that the bindings' own declarations
# of these entry points stay as they are.
_get_file_name = _lib["clang_getFileName"]
_get_file_name.argtypes = [ctypes.c_void_p]
_get_file_name.restype = _String
_get_c_string = _lib["clang_getCString"]
_get_c_string.argtypes = [_String]
_get_c_string.restype = ctypes.c_char_p
_dispose_string = _lib["clang_disposeString"]
_dispose_string.argtypes = [_String]
_dispose_string.restype = None


_get_referenced = _lib["clang_getCursorReferenced"]
_get_referenced.argtypes = [ci.Cursor]
_get_referenced.restype = ci.Cursor
_is_null = _lib["clang_Cursor_isNull"]
_is_null.argtypes = [ci.Cursor]
_is_null.restype = ctypes.c_int


def _referenced(c: ci.Cursor) -> ci.Cursor | None:
    """c.referenced without the bindings' result check (an equality call with
    the null cursor and a search of the arguments for the TU): ~28,000 calls
    per 40 TUs."""
    r = _get_referenced(c)
    if _is_null(r):
        return None
    r._tu = c._tu
    return r


def _file_name_of(ptr: int) -> str:
    """A CXFile's name. Bytes that are not UTF-8 are kept (surrogateescape),
    as the helper's include list keeps them."""
    s = _get_file_name(ptr)
    try:
        raw = _get_c_string(s) or b""
    finally:
        _dispose_string(s)
    return raw.decode("utf-8", "surrogateescape")

# The walk visits ~250,000 cursors and filters ~450,000 top-level ones over
# migration/, so the per-cursor cost of the bindings matters: cursor kinds are
# compared as the raw ints in Cursor._kind_id (Cursor.kind builds a CursorKind
# through from_id on every access), children are collected by one lean visitor
# (get_children also compares every child with the null cursor, two more
# libclang calls each), and locations are read with one clang_getFileLocation.
_k_CALL = CK.CALL_EXPR.value
_k_COMPOUND = CK.COMPOUND_STMT.value
_k_DECL_STMT = CK.DECL_STMT.value
_k_VAR = CK.VAR_DECL.value
_k_FUNCTION = CK.FUNCTION_DECL.value
_k_PARM = CK.PARM_DECL.value
_k_FIELD = CK.FIELD_DECL.value
_k_DECL_REF = CK.DECL_REF_EXPR.value
_k_MEMBER_REF_EXPR = CK.MEMBER_REF_EXPR.value
_k_MEMBER_REF = CK.MEMBER_REF.value
_k_UNEXPOSED_EXPR = CK.UNEXPOSED_EXPR.value
_k_UNEXPOSED_ATTR = CK.UNEXPOSED_ATTR.value
_k_ANNOTATE = CK.ANNOTATE_ATTR.value
_k_PAREN = CK.PAREN_EXPR.value
_k_CSTYLE_CAST = CK.CSTYLE_CAST_EXPR.value
_k_UNARY = CK.UNARY_OPERATOR.value
_k_BINARY = CK.BINARY_OPERATOR.value
_k_SIZEOF = CK.CXX_UNARY_EXPR.value
_k_INIT_LIST = CK.INIT_LIST_EXPR.value
_k_COMPOUND_LITERAL = CK.COMPOUND_LITERAL_EXPR.value
_k_LABEL_REF = CK.LABEL_REF.value
_k_IF = CK.IF_STMT.value
_k_FOR = CK.FOR_STMT.value
_k_WHILE = CK.WHILE_STMT.value
_k_RETURN = CK.RETURN_STMT.value
_k_DO = CK.DO_STMT.value
_k_SWITCH = CK.SWITCH_STMT.value
_k_CASE = CK.CASE_STMT.value
_k_DEFAULT = CK.DEFAULT_STMT.value
_k_GOTO = CK.GOTO_STMT.value
_k_INDIRECT_GOTO = CK.INDIRECT_GOTO_STMT.value
_k_LABEL = CK.LABEL_STMT.value
_k_BREAK = CK.BREAK_STMT.value
_k_CONTINUE = CK.CONTINUE_STMT.value
_k_NULL = CK.NULL_STMT.value
_k_INTEGER = CK.INTEGER_LITERAL.value
_k_STRING = CK.STRING_LITERAL.value
_k_ENUM_CONSTANT = CK.ENUM_CONSTANT_DECL.value
_CONSTANT_LITERALS = frozenset(
    {_k_INTEGER, CK.CHARACTER_LITERAL.value, CK.CXX_BOOL_LITERAL_EXPR.value}
)
_STMT_IN_EXPR = frozenset({_k_DECL_STMT, _k_IF, _k_RETURN, _k_FOR, _k_WHILE})
_WRAPPERS = frozenset({_k_UNEXPOSED_EXPR, _k_PAREN, _k_CSTYLE_CAST, _k_UNARY})
_PEELED = frozenset({_k_UNEXPOSED_EXPR, _k_PAREN})  # what _value looks through
_TOP_KINDS = frozenset({_k_FUNCTION, _k_VAR})
# Cursors that never have children in C: not worth a clang_visitChildren call.
# (~45,000 of the ~235,000 visited over migration/; none had a child, measured
# in build and no-build mode.)
_LEAVES = frozenset({
    _k_DECL_REF, _k_INTEGER, _k_STRING, CK.CHARACTER_LITERAL.value,
    CK.FLOATING_LITERAL.value, CK.TYPE_REF.value, _k_MEMBER_REF, _k_LABEL_REF,
})
_MISSING = re.compile(r"'([^']+)' file not found")

_CursorVisitor = ci.callbacks["cursor_visit"]
_InclusionVisitor = ci.callbacks["translation_unit_includes"]
_CONTINUE = 1  # CXChildVisit_Continue


class ParseFailure(Exception):
    """libclang could not produce a translation unit at all."""


class TooDeep(Exception):
    """Statements and expressions nested more than MAX_NESTING deep."""


# How deep the walk follows nested statements and expressions, counted the same
# way with the helper and without it (the helper skips Python frames, so
# Python's own recursion limit would stop the two at different depths). Each
# level costs the walker at most three Python frames: extract() makes room.
MAX_NESTING = 1000


def _collect(child: ci.Cursor, _parent: ci.Cursor, acc: list[ci.Cursor]) -> int:
    acc.append(child)
    return _CONTINUE


_COLLECT = _CursorVisitor(_collect)


def _kids(c: ci.Cursor) -> list[ci.Cursor]:
    """The children of c, like list(c.get_children()) but ~3x cheaper.

    Each child keeps a reference to the translation unit (the bindings need it
    for .referenced, .type, ...; it also keeps the TU alive), as get_children does.
    """
    acc: list[ci.Cursor] = []
    _lib.clang_visitChildren(c, _COLLECT, acc)
    tu = c._tu
    for ch in acc:
        ch._tu = tu
    return acc


# What _Walker._expr does with a cursor of each kind, for the compiled
# helper's rv_frontier: the kinds it handles (kept), the ones it returns on at
# once (skipped), and two it handles only in some cases. Every other kind goes
# to _expr's last branch, which only recurses into the children: the helper
# looks through those without a call back into Python. Keep in step with _expr.
_EXPR_KEEP = frozenset({_k_CALL, _k_COMPOUND, _k_UNARY, *_STMT_IN_EXPR})
_EXPR_SKIP = frozenset({_k_SIZEOF, *_LEAVES})
_HELPER_VERSION = 3
_STRIP, _PEEL = 1, 2  # rv_strip's masks: _strip's wrappers, _value's
_DecideFile = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _Helper:
    """The compiled accelerator (_walk.c) through ctypes: the same cursors the
    pure-Python loops would give, fewer calls across the ctypes boundary."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        names = ("clang_visitChildren", "clang_getCursorLocation",
                 "clang_Location_isFromMainFile", "clang_getFileLocation",
                 "clang_getCursorBinaryOperatorKind", "clang_getCursorReferenced",
                 "clang_getInclusions", "clang_getFileName", "clang_getCString",
                 "clang_disposeString")
        fns = (ctypes.c_void_p * len(names))(
            *(ctypes.cast(getattr(_lib, n), ctypes.c_void_p).value for n in names))
        table = (ctypes.c_ubyte * 1024)()
        for k in _EXPR_KEEP:
            table[k] = 2
        for k in _EXPR_SKIP:
            table[k] = 1
        table[_k_UNEXPOSED_EXPR] = 3  # a RecoveryExpr starts with a function's name
        table[_k_BINARY] = 4  # an assignment
        wrappers = (ctypes.c_ubyte * 1024)()
        for k in _WRAPPERS:
            wrappers[k] |= _STRIP
        for k in _PEELED:
            wrappers[k] |= _PEEL
        lib.rv_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.rv_init.restype = None
        lib.rv_init(fns, table, wrappers, _ASSIGN, _k_DECL_REF, _k_FUNCTION, _k_VAR)
        lib.rv_strip.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.rv_strip.restype = None
        lib.rv_top.argtypes = [ci.Cursor, ctypes.c_void_p, ctypes.c_size_t, _DecideFile]
        lib.rv_top.restype = ctypes.c_size_t
        lib.rv_frontier.argtypes = [ci.Cursor, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_size_t, ctypes.c_uint]
        lib.rv_frontier.restype = ctypes.c_size_t
        lib.rv_includes.argtypes = [ci.TranslationUnit, ctypes.c_char_p, ctypes.c_size_t]
        lib.rv_includes.restype = ctypes.c_size_t
        self._grow(4096)
        self._names = ctypes.create_string_buffer(1 << 16)

    def _grow(self, n: int) -> None:
        self.cap = n
        self.buf = (ci.Cursor * n)()
        self.depths = (ctypes.c_uint * n)()

    def _cursors(self, n: int, tu: Any) -> list[ci.Cursor]:
        if not n:
            return []
        out = list((ci.Cursor * n).from_buffer_copy(self.buf))
        for c in out:
            c._tu = tu
        return out

    def top(self, root: ci.Cursor, decide: Any) -> list[ci.Cursor]:
        while True:
            n = self.lib.rv_top(root, self.buf, self.cap, decide)
            if n == ctypes.c_size_t(-1).value:
                raise MemoryError("rv_top")
            if n <= self.cap:
                return self._cursors(n, root._tu)
            self._grow(n)

    def frontier(self, c: ci.Cursor, budget: int) -> list[tuple[ci.Cursor, int]] | None:
        """The cursors under c that the walker handles, each with its depth
        below c (children are 1); None when some cursor under c is deeper than
        `budget`."""
        while True:
            n = self.lib.rv_frontier(c, self.buf, self.depths, self.cap, max(budget, 0))
            if n == ctypes.c_size_t(-1).value:
                return None
            if n <= self.cap:
                return list(zip(self._cursors(n, c._tu), self.depths[:n], strict=True))
            self._grow(n)

    def strip(self, c: ci.Cursor, mask: int) -> ci.Cursor:
        out = ci.Cursor.from_buffer_copy(c)
        self.lib.rv_strip(ctypes.byref(out), mask)
        out._tu = c._tu
        return out

    def includes(self, tu: ci.TranslationUnit) -> list[str]:
        while True:
            n = self.lib.rv_includes(tu, self._names, len(self._names))
            if n <= len(self._names):
                raw = self._names.raw[:n]
                return [b.decode("utf-8", "surrogateescape") for b in raw.split(b"\0")[:-1]]
            self._names = ctypes.create_string_buffer(n)


def _load_helper() -> _Helper | None:
    """The helper if it was built (setup.py; it needs a C compiler at install
    time) and REVIEWER_WALK_HELPER is not 0; else None: the walk is pure Python."""
    if os.environ.get("REVIEWER_WALK_HELPER", "1") == "0":
        return None
    spec = importlib.util.find_spec("reviewer.extract._walk")
    if spec is None or not spec.origin:
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
        lib.rv_version.restype = ctypes.c_int
        if lib.rv_version() != _HELPER_VERSION:
            return None
        return _Helper(lib)
    except (OSError, AttributeError):
        return None


_HELPER = _load_helper()


@functools.cache
def _rel(path: str, root: str) -> str:
    """path relative to root when inside it. Memoised for the process: a worker
    names the same ~700 headers in every TU it parses."""
    path = os.path.normpath(path)
    if root and (path + os.sep).startswith(root + os.sep):
        return os.path.relpath(path, root)
    return path


def _strip(c: ci.Cursor) -> ci.Cursor:
    """c without the casts, parentheses and unary operators around one operand."""
    if c._kind_id not in _WRAPPERS:
        return c
    if _HELPER is not None:
        return _HELPER.strip(c, _STRIP)
    while c._kind_id in _WRAPPERS:
        kids = _kids(c)
        if len(kids) != 1:
            return c
        c = kids[0]
    return c


def _record_name(t: ci.Type) -> str:
    canon = t.get_canonical()
    while canon.kind in (ci.TypeKind.CONSTANTARRAY, ci.TypeKind.INCOMPLETEARRAY):
        canon = canon.get_array_element_type().get_canonical()
    decl = canon.get_declaration()
    name: str = decl.spelling if decl.kind != CK.NO_DECL_FOUND else ""
    if not name or "unnamed" in name or "anonymous" in name:
        name = t.spelling.replace("const ", "").replace("struct ", "").strip()
    return name


def _parent_record(field_decl: ci.Cursor) -> str:
    parent = field_decl.semantic_parent
    if parent is None:
        return "?"
    name: str = parent.spelling
    if not name or "unnamed" in name or "anonymous" in name:
        name = _record_name(parent.type)
    return name


@dataclass
class _Ctx:
    caller: str
    caller_file: str
    params: set[str]
    seen: dict[tuple[str, int], int] = field(default_factory=dict)


class _Walker:
    def __init__(
        self, tu: ci.TranslationUnit, root: str, main: str, scope: tuple[str, ...],
        sources: dict[str, bytes],
    ) -> None:
        self.tu = tu
        self.root = root
        self.main = main
        self.scope = scope
        self.sources = sources
        self.calls: list[Call] = []
        self.stores: list[FieldStore] = []
        self.refs: list[ObjectRef] = []
        self._obj_keys: dict[int, str] = {}
        self.addressed: dict[str, int] = {}
        self.functions: list[Function] = []
        self._fname: dict[int, str] = {}
        self._callee_info: dict[str, tuple[tuple[str, ...], bool, str, bool]] = {}
        self._buffers: dict[str, bytes] = {}
        self._scope_memo: dict[int, bool] = {}
        self._depth = 0  # statements and expressions being walked (MAX_NESTING)
        self._error: BaseException | None = None  # raised in a callback from the helper
        # Out-parameters of clang_getFileLocation, allocated once: floc() runs
        # for every statement and call.
        self._f = ctypes.c_void_p()
        self._line, self._col, self._off = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
        self._out = (
            ctypes.byref(self._f), ctypes.byref(self._line), ctypes.byref(self._col),
            ctypes.byref(self._off),
        )

    # -- locations ---------------------------------------------------------------

    def rel(self, path: str) -> str:
        return _rel(path, self.root)

    def floc(self, loc: ci.SourceLocation) -> tuple[str, int, int, int]:
        """Where a location is written: (file, line, col, offset)."""
        _lib.clang_getFileLocation(loc, *self._out)
        ptr = self._f.value
        if not ptr:
            return "", 0, 0, 0
        name = self._fname.get(ptr)
        if name is None:
            name = self._file_name(ptr)
        return name, self._line.value, self._col.value, self._off.value

    def at(self, c: ci.Cursor) -> tuple[str, int, int, int]:
        """floc() of a cursor's location."""
        return self.floc(_lib.clang_getCursorLocation(c))

    def line(self, c: ci.Cursor) -> int:
        _lib.clang_getFileLocation(
            _lib.clang_getCursorLocation(c), None, self._out[1], None, None
        )
        return self._line.value

    def _file_name(self, ptr: int) -> str:
        name = self.rel(_file_name_of(ptr))
        self._fname[ptr] = name
        return name

    def buffer(self, rel: str) -> bytes:
        buf = self._buffers.get(rel)
        if buf is None:
            path = rel if os.path.isabs(rel) else os.path.join(self.root, rel)
            buf = self.sources.get(path)
            if buf is None:
                try:
                    with open(path, "rb") as fh:
                        buf = fh.read()
                except OSError:
                    buf = b""
            self._buffers[rel] = buf
        return buf

    def header_in_scope(self, loc: ci.SourceLocation) -> bool:
        """Is a top-level cursor from a header in scope? Decided once per file:
        a TU has tens of thousands of top-level cursors from headers."""
        _lib.clang_getFileLocation(loc, self._out[0], None, None, None)
        ptr = self._f.value
        if not ptr:
            return False
        ok = self._scope_memo.get(ptr)
        if ok is None:
            ok = self._decide(ptr)
            self._scope_memo[ptr] = ok
        return ok

    def _decide_in_callback(self, ptr: int) -> bool:
        # ctypes would print an exception raised here and answer 0: keep it
        # for run() to raise, as the pure-Python walk would.
        if self._error is not None:
            return False
        try:
            return self._decide(ptr)
        except BaseException as exc:
            self._error = exc
            return False

    def _decide(self, ptr: int) -> bool:
        """Is this header (a CXFile's address) in scope?"""
        name = self._file_name(ptr)
        return name.endswith(".h") and self.in_scope(name)

    def in_scope(self, rel: str) -> bool:
        return rel == self.main or any(
            rel == s or rel.startswith(s.rstrip("/") + "/") for s in self.scope
        )

    # -- top level ---------------------------------------------------------------

    def run(self) -> None:
        root = self.tu.cursor
        if _HELPER is not None:
            decide = _DecideFile(self._decide_in_callback) if self.scope else _DecideFile()
            tops = _HELPER.top(root, decide)
            if self._error is not None:
                raise self._error
            get_location = _lib.clang_getCursorLocation
            for cur in tops:
                self._top(cur, get_location(cur))
            return
        # Only function and variable declarations matter, and a TU has ~10,000
        # top-level cursors, mostly from headers: filter by kind inside the
        # visitor, before any Python cursor is kept or located.
        top: list[ci.Cursor] = []

        def visit(child: ci.Cursor, _parent: ci.Cursor, acc: list[ci.Cursor]) -> int:
            if child._kind_id in _TOP_KINDS:
                acc.append(child)
            return _CONTINUE

        _lib.clang_visitChildren(root, _CursorVisitor(visit), top)
        # ~7,000 of these per TU are from headers out of scope; local names
        # keep the per-cursor cost down to the two or three libclang calls.
        get_location = _lib.clang_getCursorLocation
        from_main_file = _lib.clang_Location_isFromMainFile
        header_in_scope = self.header_in_scope if self.scope else None
        for cur in top:
            loc = get_location(cur)
            if not from_main_file(loc) and (
                header_in_scope is None or not header_in_scope(loc)
            ):
                continue
            cur._tu = root._tu
            self._top(cur, loc)

    def _top(self, cur: ci.Cursor, loc: ci.SourceLocation) -> None:
        if cur._kind_id == _k_FUNCTION:
            self._function(cur, loc)
        else:
            self._var_stores(cur, "", self._obj_key(cur))

    def _function(self, cur: ci.Cursor, loc: ci.SourceLocation) -> None:
        name: str = cur.spelling
        fname, line, _, off = self.floc(loc)
        start = self.floc(cur.extent.start)
        buf = self.buffer(fname)
        kids = _kids(cur)
        anns = {a.spelling for a in kids if a._kind_id == _k_ANNOTATE}
        anns.update(ctext.markers_before(buf, off, start[3] if start[0] == fname else -1))
        params = tuple(Param(p.spelling, p.type.spelling) for p in cur.get_arguments())
        is_def = cur.is_definition()
        body: tuple[Node, ...] = ()
        end_line = self.floc(cur.extent.end)[1]
        if is_def:
            ctx = _Ctx(name, fname, {p.name for p in params})
            compound = [c for c in kids if c._kind_id == _k_COMPOUND]
            if compound:
                body = tuple(self._stmt(compound[0], ctx))
        self.functions.append(
            Function(
                name=name,
                file=fname,
                line=line,
                is_definition=is_def,
                is_static=cur.storage_class == ci.StorageClass.STATIC,
                annotations=tuple(sorted(anns)),
                params=params,
                body=body,
                end_line=end_line,
                variadic=bool(
                    cur.type.kind == ci.TypeKind.FUNCTIONPROTO and cur.type.is_function_variadic()
                ),
            )
        )

    # -- statements --------------------------------------------------------------

    def _stmt(self, c: ci.Cursor, ctx: _Ctx) -> list[Node]:
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise TooDeep
        out = self._stmt_in(c, ctx)
        self._depth -= 1
        return out

    def _stmt_in(self, c: ci.Cursor, ctx: _Ctx) -> list[Node]:
        k = c._kind_id
        if k == _k_COMPOUND:
            return self._compound(_kids(c), ctx)
        where = self.at(c)
        line = where[1]
        if k == _k_IF:
            kids = _kids(c)
            out = self._exprs(kids[0], ctx)
            text = self._cond_text(where, "if")
            then = self._stmt(kids[1], ctx) if len(kids) > 1 else []
            other = self._stmt(kids[2], ctx) if len(kids) > 2 else []
            out.append(Node("if", line, text=text, branches=(tuple(then), tuple(other))))
            return out
        if k == _k_FOR:
            return self._for(c, where, ctx)
        if k == _k_WHILE:
            kids = _kids(c)
            cond = self._exprs(kids[0], ctx)
            body = cond + self._stmt(kids[-1], ctx)
            text = self._cond_text(where, "while")
            return [Node("loop", line, text=text, name="while", branches=(tuple(body),))]
        if k == _k_DO:
            kids = _kids(c)
            body = self._stmt(kids[0], ctx) + (self._exprs(kids[1], ctx) if len(kids) > 1 else [])
            return [Node("loop", line, name="do", branches=(tuple(body),))]
        if k == _k_SWITCH:
            kids = _kids(c)
            out = self._exprs(kids[0], ctx)
            body = self._stmt(kids[-1], ctx)
            text = self._cond_text(where, "switch")
            out.append(Node("switch", line, text=text, branches=(tuple(body),)))
            return out
        if k == _k_CASE:
            kids = _kids(c)
            return [Node("case", line, name="case"), *self._stmt(kids[-1], ctx)]
        if k == _k_DEFAULT:
            kids = _kids(c)
            return [Node("case", line, name="default"), *self._stmt(kids[-1], ctx)]
        if k == _k_RETURN:
            out = []
            for ch in _kids(c):
                out.extend(self._exprs(ch, ctx))
            out.append(Node("return", line))
            return out
        if k == _k_GOTO:
            labels = [ch.spelling for ch in _kids(c) if ch._kind_id == _k_LABEL_REF]
            return [Node("goto", line, name=labels[0] if labels else "?")]
        if k == _k_INDIRECT_GOTO:
            return [Node("goto", line, name="*")]
        if k == _k_LABEL:
            kids = _kids(c)
            inner = self._stmt(kids[-1], ctx) if kids else []
            return [Node("label", line, name=c.spelling), *inner]
        if k == _k_BREAK:
            return [Node("break", line)]
        if k == _k_CONTINUE:
            return [Node("continue", line)]
        if k == _k_NULL:
            return []
        if k == _k_DECL_STMT:
            out = []
            for var in _kids(c):
                if var._kind_id == _k_VAR:
                    self._var_stores(var, ctx.caller)
                    kids = _kids(var)
                    for ch in kids:
                        out.extend(self._exprs(ch, ctx))
                    init = [k for k in kids if k.kind not in (CK.TYPE_REF, CK.UNEXPOSED_ATTR)]
                    value = self._value(init[-1]) if len(init) == 1 else None
                    if value is not None and not value.startswith('"'):
                        out.append(Node("set", line, name=var.spelling, text=value))
            return out
        # An expression statement; maybe an assertion.
        fname, _, _, off = where
        buf = self.buffer(fname)
        head = ctext.ident_at(buf, off)
        if head in ("assert", "g_assert"):
            got = ctext.call_at(buf, off)
            out = [n for n in self._exprs(c, ctx) if n.kind == "call"]
            out.append(Node("assert", line, text=", ".join(got[1]) if got else ""))
            return out
        return self._exprs(c, ctx)

    def _cond_text(self, where: tuple[str, int, int, int], keyword: str) -> str:
        fname, _, _, off = where
        return ctext.keyword_condition(self.buffer(fname), off, keyword) or ""

    def _guard_call(self, decl_stmt: ci.Cursor) -> ci.Cursor | None:
        """The initialiser call of a cleanup-attribute variable (g_autoptr guard)."""
        for var in _kids(decl_stmt):
            if var._kind_id != _k_VAR:
                continue
            kids = _kids(var)
            if not any(k._kind_id == _k_UNEXPOSED_ATTR for k in kids):
                continue
            for k in kids:
                s = _strip(k)
                if s._kind_id == _k_CALL:
                    return s
        return None

    def _compound(self, kids: list[ci.Cursor], ctx: _Ctx) -> list[Node]:
        out: list[Node] = []
        for i, ch in enumerate(kids):
            if ch._kind_id == _k_DECL_STMT:
                guard = self._guard_call(ch)
                if guard is not None:
                    out.extend(self._guard_scope(ch, guard, "block", kids[i + 1 :], ctx))
                    return out
            out.extend(self._stmt(ch, ctx))
        return out

    def _guard_scope(
        self, decl_stmt: ci.Cursor, guard: ci.Cursor, form: str, rest: Any, ctx: _Ctx
    ) -> list[Node]:
        before = self._exprs(decl_stmt, ctx)
        # The guard's own call is the last call node of its initialiser.
        idx = before[-1].call if before and before[-1].kind == "call" else -1
        if idx >= 0:
            before = before[:-1]
        body = self._compound(rest, ctx) if form == "block" else self._stmt(rest, ctx)
        line = self.line(guard)
        before.append(Node("scope", line, call=idx, name=form, branches=(tuple(body),)))
        return before

    def _for(self, c: ci.Cursor, where: tuple[str, int, int, int], ctx: _Ctx) -> list[Node]:
        kids = _kids(c)
        body = kids[-1]
        fname, line, _, off = where
        parts = ctext.for_parts(self.buffer(fname), off)
        rest = kids[:-1]
        init = cond = inc = None
        text = ""
        if parts is not None:
            has_init, has_cond, has_inc, text = parts
            it = iter(rest)
            init = next(it, None) if has_init else None
            cond = next(it, None) if has_cond else None
            inc = next(it, None) if has_inc else None
        else:
            # Written by a macro (WITH_QEMU_LOCK_GUARD, WITH_BQL_HELD, ...): those
            # have all three parts; otherwise take what is there in order.
            if rest and rest[0]._kind_id == _k_DECL_STMT:
                init, rest = rest[0], rest[1:]
            cond = rest[0] if rest else None
            inc = rest[1] if len(rest) > 1 else None
        if init is not None and init._kind_id == _k_DECL_STMT:
            guard = self._guard_call(init)
            if guard is not None:
                # The condition and increment are the guard's own bookkeeping.
                return self._guard_scope(init, guard, "for", body, ctx)
        out = self._exprs(init, ctx) if init is not None else []
        inner = (self._exprs(cond, ctx) if cond is not None else []) + self._stmt(body, ctx)
        if inc is not None:
            inner += self._exprs(inc, ctx)
        out.append(Node("loop", line, text=text, name="for", branches=(tuple(inner),)))
        return out

    # -- expressions -------------------------------------------------------------

    def _exprs(self, c: ci.Cursor, ctx: _Ctx) -> list[Node]:
        out: list[Node] = []
        self._expr(c, ctx, out)
        return out

    def _expr(self, c: ci.Cursor, ctx: _Ctx, out: list[Node], callee: bool = False) -> None:
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise TooDeep
        self._expr_in(c, ctx, out, callee)
        self._depth -= 1

    def _expr_in(self, c: ci.Cursor, ctx: _Ctx, out: list[Node], callee: bool) -> None:
        k = c._kind_id
        if k == _k_CALL:
            kids = _kids(c)
            for i, ch in enumerate(kids):
                self._expr(ch, ctx, out, callee=i == 0)
            node = self._call(c, kids, ctx)
            if node is not None:
                out.append(node)
            return
        if k == _k_UNEXPOSED_EXPR and not callee:
            kids = _kids(c)
            if kids and kids[0]._kind_id == _k_DECL_REF and self._is_recovery(c, kids[0]):
                # A call clang could not type-check (wrong argument count, as in
                # a caller a patch forgot to update): kept as a RecoveryExpr.
                for ch in kids[1:]:
                    self._expr(ch, ctx, out)
                node = self._call(c, kids, ctx)
                if node is not None:
                    out.append(node)
                return
        if k == _k_COMPOUND:  # GNU statement expression ({ ... })
            out.extend(self._stmt(c, ctx))
            return
        if k == _k_SIZEOF:  # sizeof/alignof: not evaluated
            return
        if k == _k_BINARY and _lib.clang_getCursorBinaryOperatorKind(c) == _ASSIGN:
            self._assign_store(c, ctx.caller)
            kids = _kids(c)
            for ch in kids:
                self._expr(ch, ctx, out)
            flag = self._flag_set(kids)
            if flag is not None:
                out.append(Node("set", self.floc(c.location)[1], name=flag[0], text=flag[1]))
            return
        if k in _STMT_IN_EXPR:
            out.extend(self._stmt(c, ctx))
            return
        if k in _LEAVES:
            return
        if k == _k_UNARY:
            kids = _kids(c)
            if len(kids) == 1 and kids[0]._kind_id == _k_DECL_REF:
                # `&vmstate_foo` in code: counted, so that the analysis knows
                # which objects are only ever handed to the functions that load them.
                r = _referenced(kids[0])
                if (r is not None and r._kind_id == _k_VAR
                        and c.type.kind == ci.TypeKind.POINTER):
                    okey = self._obj_key(r)
                    if okey:
                        self.addressed[okey] = self.addressed.get(okey, 0) + 1
        elif _HELPER is not None:
            # Nothing else to do here but recurse: the helper looks through
            # the cursors that would only be recursed through, and gives each
            # one it keeps with its depth below c, so that nesting counts the
            # same with and without it.
            found = _HELPER.frontier(c, MAX_NESTING - self._depth)
            if found is None:
                raise TooDeep
            depth = self._depth
            for ch, below in found:
                self._depth = depth + below - 1
                self._expr(ch, ctx, out)
            self._depth = depth
            return
        else:
            kids = _kids(c)
        for ch in kids:
            self._expr(ch, ctx, out)

    def _flag_set(self, kids: list[ci.Cursor]) -> tuple[str, str] | None:
        """`flag = true;` on a local variable: recorded so the BQL analysis can
        follow flags that mirror the lock state (`early_fail`)."""
        if len(kids) != 2:
            return None
        lhs = _strip(kids[0])
        if lhs.kind != CK.DECL_REF_EXPR:
            return None
        ref = _referenced(lhs)
        if ref is None or ref.kind != CK.VAR_DECL or ref.semantic_parent is None or (
            ref.semantic_parent.kind != CK.FUNCTION_DECL
        ):
            return None
        value = self._value(kids[1])
        if value is None or value.startswith('"'):
            return None
        return str(ref.spelling), value

    def _is_recovery(self, c: ci.Cursor, ref: ci.Cursor) -> bool:
        r = _referenced(ref)
        if r is None or r.kind != CK.FUNCTION_DECL:
            return False
        fname, _, _, off = self.floc(c.location)
        buf = self.buffer(fname)
        got = ctext.call_at(buf, off)
        if got is None or got[0] != r.spelling:
            return False
        end = off + len(r.spelling)
        return buf[ctext.skip_space(buf, end) : ctext.skip_space(buf, end) + 1] == b"("

    def _call(self, c: ci.Cursor, kids: list[ci.Cursor], ctx: _Ctx) -> Node | None:
        if not kids:
            return None
        target = _strip(kids[0])
        args = kids[1:]
        via = "unknown"
        callee = ""
        base = ""
        static = False
        callee_file = ""
        anns: tuple[str, ...] = ()
        noreturn = False
        tk = target._kind_id
        if tk == _k_DECL_REF:
            ref = _referenced(target)
            rk = ref._kind_id if ref is not None else -1
            if ref is not None and rk == _k_FUNCTION:
                via = "direct"
                callee = ref.spelling
                anns, static, callee_file, noreturn = self._callee(ref)
            elif rk not in (_k_VAR, _k_PARM, _k_FIELD):
                # A function whose declaration was lost with a missing header
                # (no-build mode): still a direct call by name.
                via = "direct"
                callee = target.spelling
            else:
                callee = target.spelling
        elif tk == _k_MEMBER_REF_EXPR:
            ref = _referenced(target)
            if ref is not None and ref._kind_id == _k_FIELD:
                via = "field"
                callee = f"{_parent_record(ref)}.{ref.spelling}"
                bk = _kids(target)
                base = self._text(bk[0]) if bk else ""
            else:
                callee = target.spelling
        fname, line, col, off = self.at(c)
        key = (callee, off)
        if key in ctx.seen:
            return None  # the same written call expanded twice (assert, MAX, ...)
        buf = self.buffer(fname)
        written = ctext.call_at(buf, off)
        head, texts = written if written else ("", [])
        macro = ""
        written_name = callee.split(".")[-1] if via == "field" else callee
        if via in ("direct", "field") and head and head != written_name:
            macro = head
        values = tuple(self._value(a) for a in args)
        fn_args: list[tuple[int, str]] = []
        param_args: list[tuple[int, str]] = []
        obj_args: list[tuple[int, str]] = []
        for i, a in enumerate(args):
            s = _strip(a)
            if s._kind_id == _k_DECL_REF:
                r = _referenced(s)
                if r is not None and r._kind_id == _k_FUNCTION:
                    fn_args.append((i, r.spelling))
                elif r is not None and r._kind_id == _k_PARM and r.spelling in ctx.params:
                    param_args.append((i, r.spelling))
                elif (r is not None and r._kind_id == _k_VAR
                      and a.type.kind == ci.TypeKind.POINTER):
                    okey = self._obj_key(r)
                    if okey:
                        obj_args.append((i, okey))
        idx = len(self.calls)
        self.calls.append(
            Call(
                caller=ctx.caller,
                caller_file=ctx.caller_file,
                callee=callee or (head and f"({head})") or "?",
                via=via,
                file=fname,
                line=line,
                col=col,
                args=tuple(texts),
                values=values,
                macro=macro,
                callee_static=static,
                callee_file=callee_file,
                callee_annotations=anns,
                fn_args=tuple(fn_args),
                param_args=tuple(param_args),
                noreturn=noreturn,
                obj_args=tuple(obj_args),
                base=base,
            )
        )
        ctx.seen[key] = idx
        return Node("call", line, call=idx)

    def _callee(self, ref: ci.Cursor) -> tuple[tuple[str, ...], bool, str, bool]:
        name: str = ref.spelling
        info = self._callee_info.get(name)
        if info is None:
            anns = tuple(sorted({a.spelling for a in _kids(ref) if a._kind_id == _k_ANNOTATE}))
            static = ref.storage_class == ci.StorageClass.STATIC
            where = ""
            if static:
                d = ref.get_definition() or ref
                where = self.at(d)[0]
            noreturn = "noreturn" in ref.type.spelling
            info = (anns, static, where, noreturn)
            self._callee_info[name] = info
        return info

    def _value(self, a: ci.Cursor) -> str | None:
        is_bool = a.type.kind == ci.TypeKind.BOOL
        s = a
        if s._kind_id not in _PEELED:
            pass
        elif _HELPER is not None:
            s = _HELPER.strip(s, _PEEL)
        else:
            while s._kind_id in _PEELED:
                kids = _kids(s)
                if len(kids) != 1:
                    break
                s = kids[0]
        k = s._kind_id
        if k == _k_CSTYLE_CAST and s.type.kind == ci.TypeKind.POINTER:
            inner = _strip(s)
            if inner._kind_id == _k_INTEGER and self._eval(inner) == 0:
                return "NULL"
            return None
        if k == _k_STRING:
            # __FILE__ expands to the absolute path: keep facts independent of
            # where the tree is checked out.
            return str(s.spelling).replace(self.root + os.sep, "")
        if k == _k_DECL_REF:
            r = _referenced(s)
            if r is not None and r._kind_id == _k_ENUM_CONSTANT:
                return str(r.spelling)
            return None
        if k in _CONSTANT_LITERALS or (k == _k_UNARY and _strip(s)._kind_id == _k_INTEGER):
            v = self._eval(s)
            if v is None:
                return None
            if is_bool:
                return "true" if v else "false"
            return str(v)
        return None

    @staticmethod
    def _eval(c: ci.Cursor) -> int | None:
        res = _lib.clang_Cursor_Evaluate(c)
        if not res:
            return None
        try:
            if _lib.clang_EvalResult_getKind(res) != _EVAL_INT:
                return None
            return int(_lib.clang_EvalResult_getAsLongLong(res))
        finally:
            _lib.clang_EvalResult_dispose(res)

    # -- function pointers stored in struct fields ---------------------------------

    def _fn_ref(self, c: ci.Cursor) -> ci.Cursor | None:
        s = _strip(c)
        if s._kind_id == _k_DECL_REF:
            r = _referenced(s)
            if r is not None and r._kind_id == _k_FUNCTION:
                return r
        return None

    def _store(self, struct: str, fieldname: str, fn: ci.Cursor, at: ci.Cursor, how: str,
               in_function: str, owner: str = "") -> None:
        fname, line, _, _ = self.at(at)
        _, static, where, _ = self._callee(fn)
        self.stores.append(
            FieldStore(
                struct=struct, field=fieldname, function=fn.spelling, file=fname, line=line,
                how=how, in_function=in_function, function_static=static, function_file=where,
                owner=owner if not in_function else "",
            )
        )

    def _obj_key(self, var: ci.Cursor) -> str:
        """The key of a global object (a file-scope variable of struct or array
        type): its name, or "file:name" when static; "" for anything else."""
        memo = hash(var)
        got = self._obj_keys.get(memo)
        if got is None:
            name: str = var.spelling
            got = ""
            kind = var.type.get_canonical().kind
            if kind in (ci.TypeKind.RECORD, ci.TypeKind.CONSTANTARRAY,
                        ci.TypeKind.INCOMPLETEARRAY):
                linkage = var.linkage
                if linkage == ci.LinkageKind.EXTERNAL:
                    got = name
                elif linkage == ci.LinkageKind.INTERNAL:
                    got = f"{self.at(var.get_definition() or var)[0]}:{name}"
            self._obj_keys[memo] = got
        return got

    def _text(self, c: ci.Cursor) -> str:
        """An expression as written, on one line; "" when it is not written in
        one piece (made by a macro) or is long."""
        ext = c.extent
        f1, _, _, o1 = self.floc(ext.start)
        f2, _, _, o2 = self.floc(ext.end)
        if not f1 or f1 != f2 or not 0 < o2 - o1 <= 200:
            return ""
        return " ".join(self.buffer(f1)[o1:o2].decode("utf-8", "replace").split())

    def _var_stores(self, var: ci.Cursor, in_function: str, owner: str = "") -> None:
        for ch in _kids(var):
            if ch._kind_id == _k_INIT_LIST:
                self._init_list(ch, in_function, owner, ("", ""))

    def _init_list(self, il: ci.Cursor, in_function: str, owner: str,
                   slot: tuple[str, str]) -> None:
        """Function pointers stored by designated (or positional) initialisers,
        and, inside a global's initialiser, the global objects it names.
        `slot`: the field this list initialises, for the items of an array."""
        record = _record_name(il.type)
        canon = il.type.get_canonical()
        is_array = canon.kind in (ci.TypeKind.CONSTANTARRAY, ci.TypeKind.INCOMPLETEARRAY)
        fields_: list[str] = []
        if not is_array:
            decl = canon.get_declaration()
            fields_ = [f.spelling for f in _kids(decl) if f._kind_id == _k_FIELD]
        pos = 0
        for item in _kids(il):
            kids = _kids(item) if item._kind_id == _k_UNEXPOSED_EXPR else []
            if kids and kids[0]._kind_id == _k_MEMBER_REF:
                designators = [k for k in kids[:-1] if k._kind_id == _k_MEMBER_REF]
                value = kids[-1]
                last = designators[-1]
                ref = _referenced(last)
                struct = _parent_record(ref) if ref is not None else record
                fieldname = last.spelling
                if fields_ and designators[0].spelling in fields_:
                    pos = fields_.index(designators[0].spelling) + 1
            elif is_array:
                value = item
                struct, fieldname = slot
            else:
                value = item
                struct = record
                fieldname = fields_[pos] if pos < len(fields_) else ""
                pos += 1
            inner = _strip(value)
            if inner._kind_id == _k_COMPOUND_LITERAL:
                # `.fields = (const VMStateField[]) { ... }`
                lits = [k for k in _kids(inner) if k._kind_id == _k_INIT_LIST]
                if lits:
                    inner = lits[0]
            if inner._kind_id == _k_INIT_LIST:
                self._init_list(inner, in_function, owner, (struct, fieldname))
                continue
            if inner._kind_id != _k_DECL_REF:
                continue
            r = _referenced(inner)
            if r is None:
                continue
            if r._kind_id == _k_FUNCTION:
                if fieldname and not is_array:
                    self._store(struct, fieldname, r, value, "init", in_function, owner)
            elif r._kind_id == _k_VAR and owner and not in_function:
                target = self._obj_key(r)
                if target and value.type.kind == ci.TypeKind.POINTER:
                    self.refs.append(ObjectRef(owner, target, struct, fieldname,
                                               *self.at(value)[:2]))

    def _assign_store(self, c: ci.Cursor, in_function: str) -> None:
        kids = _kids(c)
        if len(kids) != 2:
            return
        lhs = _strip(kids[0])
        if lhs._kind_id != _k_MEMBER_REF_EXPR:
            return
        ref = _referenced(lhs)
        if ref is None or ref._kind_id != _k_FIELD:
            return
        fn = self._fn_ref(kids[1])
        if fn is not None:
            self._store(_parent_record(ref), ref.spelling, fn, c, "assign", in_function)


# Set in a forked per-TU child that ends with os._exit: each TU and its index
# are kept instead of disposed of. Freeing a QEMU TU's AST costs ~1.5 ms (about
# 1% of its parse), and the exit frees the memory anyway.
_KEPT: list[Any] | None = None


def keep_translation_units() -> None:
    global _KEPT
    _KEPT = []


def extract(
    path: str,
    args: list[str],
    *,
    root: str,
    mode: str,
    scope: tuple[str, ...] = (),
    unsaved: dict[str, bytes] | None = None,
    pch: str = "",
) -> tuple[TUFacts, list[str]]:
    """Parse one TU and return its facts and the files it included (absolute).

    pch: a precompiled prefix header (reviewer.extract.pch) the TU starts
    with. Its declarations are out of scope by construction, so the index
    skips them rather than load each one from the PCH to be filtered out; the
    files it holds are not among the returned includes (the caller adds them)."""
    root = os.path.normpath(os.path.abspath(root))
    path = os.path.normpath(os.path.abspath(path))
    sources = dict(unsaved or {})
    index = ci.Index.create(excludeDecls=bool(pch))
    try:
        tu = index.parse(
            path,
            args=[*args, "-include-pch", pch] if pch else args,
            unsaved_files=[(p, data.decode("utf-8", "replace")) for p, data in sources.items()]
            or None,
            options=_PARSE_OPTIONS,
        )
    except ci.TranslationUnitLoadError as exc:
        raise ParseFailure(f"libclang could not parse {path}: {exc}") from exc
    if _KEPT is not None:
        _KEPT.append((index, tu))
    walker = _Walker(tu, root, walker_rel(path, root), scope, sources)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * MAX_NESTING + 500))  # TooDeep comes first
    try:
        walker.run()
    finally:
        sys.setrecursionlimit(limit)
    diags: list[Diagnostic] = []
    missing: list[str] = []
    errors = 0
    for d in tu.diagnostics:
        if d.severity < ci.Diagnostic.Error:
            continue
        errors += 1
        msg = str(d.spelling)
        m = _MISSING.search(msg)
        if m:
            missing.append(m.group(1))
        if len(diags) < 50:
            loc = d.location
            fname = walker.rel(str(loc.file.name)) if loc.file else ""
            sev = "fatal" if d.severity >= ci.Diagnostic.Fatal else "error"
            diags.append(Diagnostic(sev, fname, int(loc.line), msg))
    # libclang spells a header found through a relative -I (QEMU's generated
    # config-host.h, qapi/*.h in the build directory) relative to the compile
    # command's directory; the cache hashes these paths from another directory.
    workdir = next(
        (a.split("=", 1)[1] for a in args if a.startswith("-working-directory=")), os.getcwd()
    )
    includes = _in_order(workdir, _included_files(tu))
    facts = TUFacts(
        file=walker.main,
        mode=mode,
        functions=tuple(walker.functions),
        calls=tuple(walker.calls),
        field_stores=tuple(walker.stores),
        object_refs=tuple(walker.refs),
        addressed=tuple(sorted(walker.addressed.items())),
        errors=errors,
        diagnostics=tuple(diags),
        missing_headers=tuple(sorted(set(missing))),
    )
    return facts, includes


def build_pch(header: str, args: list[str], out: str) -> list[str] | None:
    """Precompile `header` with a TU's arguments into `out`; the files it
    included (absolute), or None when it had errors (a prefix with errors
    would hide them from the TUs that use it)."""
    index = ci.Index.create()
    try:
        tu = index.parse(header, args=args, options=_PARSE_OPTIONS | _FOR_SERIALIZATION)
    except ci.TranslationUnitLoadError:
        return None
    if any(d.severity >= ci.Diagnostic.Error for d in tu.diagnostics):
        return None
    try:
        tu.save(out)
    except ci.TranslationUnitSaveError:
        return None
    workdir = next(
        (a.split("=", 1)[1] for a in args if a.startswith("-working-directory=")), os.getcwd()
    )
    return _in_order(workdir, _included_files(tu))


def _included_files(tu: ci.TranslationUnit) -> list[str]:
    """Names of the files the TU included, as libclang spells them, in the
    order they were first entered (the order of libclang's source manager):
    whether a header came before another is a fact of the TU too
    (reviewer.extract.delta asks it of an #include a change adds).

    Like [inc.include.name for inc in tu.get_includes()], without building a
    FileInclusion (and locating its #include line) for each of ~700 inclusions.
    """
    if _HELPER is not None:
        return _HELPER.includes(tu)
    names: list[str] = []

    def visit(f: Any, _stack: Any, depth: int, _data: Any) -> None:
        if depth > 0:  # depth 0 is the main file itself
            names.append(_file_name_of(ctypes.cast(f, ctypes.c_void_p).value or 0))

    _lib.clang_getInclusions(tu, _InclusionVisitor(visit), None)
    return names


def _in_order(workdir: str, names: list[str]) -> list[str]:
    """Absolute, normalised, each once, in first-inclusion order."""
    return list(dict.fromkeys(os.path.normpath(os.path.join(workdir, n)) for n in names))


def walker_rel(path: str, root: str) -> str:
    if (path + os.sep).startswith(root + os.sep):
        return os.path.relpath(path, root)
    return path
