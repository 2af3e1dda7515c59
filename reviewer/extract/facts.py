"""The facts: what one libclang pass over a translation unit found.

Frozen dataclasses, serialisable to JSON and back. Nothing here knows QEMU's API:
the extractor records calls, guard scopes, conditions and field stores as written,
and the API model (reviewer.model) says what they mean. That keeps cached facts
valid when the model changes, and lets rule tests build facts by hand.

The schema is versioned (SCHEMA_VERSION) and documented in docs/facts-schema.md;
bump the version whenever a field changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1

# Bump when reviewer.extract.clangwalk records something different for the same
# source, so cached facts are rebuilt. Kept here rather than in clangwalk so that
# checking the cache does not load libclang (a fully cached run never needs it).
EXTRACTOR_VERSION = "6"  # 6: includes in first-inclusion order


@dataclass(frozen=True)
class Param:
    name: str
    type: str


@dataclass(frozen=True)
class Node:
    """One step of a function body, in source order, with its control structure.

    kind:
      call      a call; `call` indexes TUFacts.calls
      if        `text` is the condition as written; branches = (then, else)
      loop      `name` is for/while/do; `text` the condition; branches = (body,)
      switch    `text` the controlling expression; branches = (body,) with case nodes
      case      a case or default label inside a switch body (`name`)
      scope     a cleanup-attribute guard: `call` is its initialiser call, `name` is
                "for" (guard in a for-init: held for the loop body) or "block" (held
                to the end of the enclosing block); branches = (body,)
      assert    `text` is the asserted condition as written
      set       a local variable set to a constant: `name` = `text` (flags)
      return, break, continue
      goto      `name` is the label
      label     `name` is the label
    """

    kind: str
    line: int
    call: int = -1
    text: str = ""
    name: str = ""
    branches: tuple[tuple[Node, ...], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"k": self.kind, "l": self.line}
        if self.call >= 0:
            out["c"] = self.call
        if self.text:
            out["t"] = self.text
        if self.name:
            out["n"] = self.name
        if self.branches:
            out["b"] = [[n.to_json() for n in br] for br in self.branches]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Node:
        return cls(
            kind=d["k"],
            line=d["l"],
            call=d.get("c", -1),
            text=d.get("t", ""),
            name=d.get("n", ""),
            branches=tuple(tuple(cls.from_json(n) for n in br) for br in d.get("b", ())),
        )


@dataclass(frozen=True)
class Function:
    name: str
    file: str
    line: int
    is_definition: bool
    is_static: bool
    annotations: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    body: tuple[Node, ...] = ()
    end_line: int = 0
    variadic: bool = False

    @property
    def key(self) -> str:
        """Graph identity: static functions are per file, others global."""
        return f"{self.file}:{self.name}" if self.is_static else self.name


@dataclass(frozen=True)
class Call:
    """A call site.

    via: "direct" (callee is a function name), "field" (callee is "Struct.field",
    a call through a function pointer stored in a struct), or "unknown" (any other
    indirect call; callee is the callee expression as written).
    args: argument texts as written; when the call was written as a macro (`macro`
    set, e.g. bql_lock() for bql_lock_impl(...)) these are the macro's arguments.
    values: per AST argument, its constant value ("true", "false", "NULL", an
    integer, an enum constant, a string literal) or None.
    fn_args: arguments that name a function, as (index, function name).
    param_args: arguments that are the caller's own parameters, as (index, name).
    obj_args: arguments that are the address of a global object (`&vmstate_foo`,
    or a global array), as (index, object key: "file:name" when static).
    base: for via="field", the struct the pointer is read from, as written
    (`vmsd` in `vmsd->post_load(...)`, `se->ops` in `se->ops->load_state(...)`).
    """

    caller: str
    callee: str
    via: str
    file: str
    line: int
    col: int
    args: tuple[str, ...] = ()
    values: tuple[str | None, ...] = ()
    macro: str = ""
    callee_static: bool = False
    callee_file: str = ""
    callee_annotations: tuple[str, ...] = ()
    fn_args: tuple[tuple[int, str], ...] = ()
    param_args: tuple[tuple[int, str], ...] = ()
    noreturn: bool = False
    caller_file: str = ""
    obj_args: tuple[tuple[int, str], ...] = ()
    base: str = ""

    @property
    def callee_key(self) -> str:
        if self.via == "direct" and self.callee_static:
            return f"{self.callee_file}:{self.callee}"
        return self.callee


@dataclass(frozen=True)
class FieldStore:
    """A function stored into a struct field: `.post_load = foo` or `s->f = foo`.

    owner: the key of the global object whose initialiser holds the store
    ("file:name" when static; "" for assignments and function-local objects).
    """

    struct: str
    field: str
    function: str
    file: str
    line: int
    how: str  # "init" (initialiser) or "assign"
    in_function: str = ""
    function_static: bool = False
    function_file: str = ""
    owner: str = ""

    @property
    def slot(self) -> str:
        return f"{self.struct}.{self.field}"

    @property
    def function_key(self) -> str:
        return f"{self.function_file}:{self.function}" if self.function_static else self.function


@dataclass(frozen=True)
class ObjectRef:
    """A global object named inside another global's initialiser: `.vmsd =
    &vmstate_x` in a VMStateField of vmstate_parent, `&vmstate_sub` in its
    subsections list, `.info = &vmstate_info_uint8`. Keys as FieldStore.owner."""

    owner: str
    target: str
    struct: str  # the record of the designated field ("" in a bare array)
    field: str
    file: str
    line: int


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error" | "fatal" | "warning"
    file: str
    line: int
    message: str


@dataclass(frozen=True)
class TUFacts:
    file: str
    mode: str  # "build" | "nobuild" | "plain"
    functions: tuple[Function, ...] = ()
    calls: tuple[Call, ...] = ()
    field_stores: tuple[FieldStore, ...] = ()
    object_refs: tuple[ObjectRef, ...] = ()
    # Global objects whose address is taken in function bodies (`&vmstate_x`,
    # as a call argument, in an assignment, ...), with how often.
    addressed: tuple[tuple[str, int], ...] = ()
    errors: int = 0
    diagnostics: tuple[Diagnostic, ...] = ()
    missing_headers: tuple[str, ...] = ()
    schema: int = SCHEMA_VERSION
    failed: str = ""  # non-empty when the TU could not be parsed at all

    @property
    def degraded(self) -> bool:
        return self.errors > 0 or bool(self.failed)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "file": self.file,
            "mode": self.mode,
            "errors": self.errors,
            "failed": self.failed,
            "missing_headers": list(self.missing_headers),
            "diagnostics": [_plain(d) for d in self.diagnostics],
            "functions": [
                {
                    **_plain(f, skip=("params", "body")),
                    "params": [_plain(p) for p in f.params],
                    "body": [n.to_json() for n in f.body],
                }
                for f in self.functions
            ],
            "calls": [_plain(c) for c in self.calls],
            "field_stores": [_plain(s) for s in self.field_stores],
            "object_refs": [_plain(r) for r in self.object_refs],
            "addressed": [list(a) for a in self.addressed],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TUFacts:
        if d.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"facts schema {d.get('schema')} != {SCHEMA_VERSION}")
        return cls(
            file=d["file"],
            mode=d["mode"],
            errors=d["errors"],
            failed=d.get("failed", ""),
            missing_headers=tuple(d["missing_headers"]),
            diagnostics=tuple(Diagnostic(**x) for x in d["diagnostics"]),
            functions=tuple(
                Function(
                    **{
                        **{k: v for k, v in f.items() if k not in ("body", "params")},
                        "annotations": tuple(f["annotations"]),
                        "params": tuple(Param(**p) for p in f["params"]),
                        "body": tuple(Node.from_json(n) for n in f["body"]),
                    }
                )
                for f in d["functions"]
            ),
            calls=tuple(_call_from_json(c) for c in d["calls"]),
            field_stores=tuple(FieldStore(**s) for s in d["field_stores"]),
            object_refs=tuple(ObjectRef(**r) for r in d.get("object_refs", ())),
            addressed=tuple((str(k), int(n)) for k, n in d.get("addressed", ())),
        )


def _call_from_json(c: dict[str, Any]) -> Call:
    return Call(
        **{
            **c,
            "args": tuple(c["args"]),
            "values": tuple(c["values"]),
            "callee_annotations": tuple(c["callee_annotations"]),
            "fn_args": tuple((int(i), str(n)) for i, n in c["fn_args"]),
            "param_args": tuple((int(i), str(n)) for i, n in c["param_args"]),
            "obj_args": tuple((int(i), str(n)) for i, n in c.get("obj_args", ())),
        }
    )


# Field names per fact class: dataclasses.fields() rebuilds its answer on every
# call, and _plain runs for each of the ~40,000 calls, params and functions of
# migration/ whenever facts are written out.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A fact's fields, in declaration order, as JSON-ready values (tuples, and
    tuples inside them, become lists). Fields named in `skip` are left out."""
    cls = type(obj)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    out: dict[str, Any] = {}
    for name in names:
        if name in skip:
            continue
        v = getattr(obj, name)
        if isinstance(v, tuple):
            v = [list(x) if isinstance(x, tuple) else x for x in v]
        out[name] = v
    return out


@dataclass
class FactSet:
    """Facts of several TUs, with the lookups every consumer needs."""

    tus: list[TUFacts] = field(default_factory=list)

    def functions(self) -> list[Function]:
        return [f for tu in self.tus for f in tu.functions]

    def calls(self) -> list[Call]:
        return [c for tu in self.tus for c in tu.calls]

    def field_stores(self) -> list[FieldStore]:
        return [s for tu in self.tus for s in tu.field_stores]

    def object_refs(self) -> list[ObjectRef]:
        return [r for tu in self.tus for r in tu.object_refs]
