"""Stand-ins for QEMU's generated headers, for no-build mode.

A plain QEMU checkout lacks every header its build generates: the QAPI headers
(`qapi/qapi-types-*.h`, `-visit-`, `-commands-`, `-events-`, `-builtin-`), the
trace headers (`trace/trace-*.h`, included by each directory's `trace.h`) and
`qemu-version.h`. Without them libclang reports about a hundred errors per TU
and, worse, silently drops every call whose arguments name an undeclared QAPI
enum or type (DOMAIN.md). So we write declarations with the same names and C
shapes, from the tree's own inputs: the QAPI schema (`qapi/*.json`) and the
`trace-events` files.

They are declarations only: enums with QAPI's constant names, structs with
their members, list types, and prototypes of the `*_lookup` tables,
`qapi_free_*`, `visit_type_*`, `qmp_*` commands, `qapi_event_send_*` and
`trace_*` functions. Their bodies do not matter to reviewer: calls inside
generated headers are never in scope.

Our own generator, written from QAPI's documented rules (docs/devel/qapi-code-
gen.rst, docs/devel/tracing.rst), checked against a real build's headers.
Nothing of QEMU's generator or of its output is copied here.

The files go into a directory of their own under the cache (never into the
user's tree), one per tree, rewritten only when the inputs' content hash
changes; a file is replaced only when its text changes, so the fact cache
(which records the content hash of every header a TU included) invalidates
exactly the TUs whose stand-ins changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union

Json = Union[str, bool, list["Json"], dict[str, "Json"]]  # noqa: UP007 (recursive alias)


class SchemaError(ValueError):
    """A schema file we cannot read; its module is skipped, the run goes on."""


# --------------------------------------------------------------------------
# Reading the QAPI schema: JSON with single-quoted strings and '#' comments,
# a sequence of top-level objects per file.

_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<str>'(?:[^'\\]|\\.)*')|(?P<punct>[{}\[\]:,])|(?P<word>[A-Za-z]+)""",
    re.S,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _tokens(text: str) -> Iterator[str | tuple[str]]:
    """Punctuation and words as str; string literals as a 1-tuple (their value)."""
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise SchemaError(f"line {line}: unexpected {text[pos]!r}")
        pos = m.end()
        if m.group("str") is not None:
            raw = m.group("str")[1:-1]
            yield (re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), raw),)
        elif m.group("punct") is not None:
            yield m.group("punct")
        elif m.group("word") is not None:
            yield m.group("word")


def parse_schema(text: str) -> list[dict[str, Json]]:
    """The top-level expressions of one schema file."""
    toks = list(_tokens(text))
    pos = 0

    def value() -> Json:
        nonlocal pos
        if pos >= len(toks):
            raise SchemaError("unexpected end of file")
        tok = toks[pos]
        pos += 1
        if isinstance(tok, tuple):
            return tok[0]
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "{":
            obj: dict[str, Json] = {}
            while toks[pos] != "}":
                key = toks[pos]
                if not isinstance(key, tuple) or toks[pos + 1] != ":":
                    raise SchemaError(f"expected 'key': near {key!r}")
                pos += 2
                obj[key[0]] = value()
                if toks[pos] == ",":
                    pos += 1
            pos += 1
            return obj
        if tok == "[":
            arr: list[Json] = []
            while toks[pos] != "]":
                arr.append(value())
                if toks[pos] == ",":
                    pos += 1
            pos += 1
            return arr
        raise SchemaError(f"unexpected {tok!r}")

    exprs: list[dict[str, Json]] = []
    try:
        while pos < len(toks):
            expr = value()
            if not isinstance(expr, dict):
                raise SchemaError("a top-level expression is not an object")
            exprs.append(expr)
    except IndexError:
        raise SchemaError("unexpected end of file") from None
    return exprs


# --------------------------------------------------------------------------
# QAPI's C names.

# C and C++ keywords and a few names compilers predefine as macros: a QAPI
# member with such a name gets a 'q_' prefix in C.
_PROTECTED = frozenset(
    (
        "auto", "break", "case", "char", "const", "continue", "default", "do", "double",
        "else", "enum", "extern", "float", "for", "goto", "if", "int", "long", "register",
        "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
        "union", "unsigned", "void", "volatile", "while", "inline", "restrict", "_Bool",
        "_Complex", "_Imaginary", "_Alignas", "_Alignof", "_Atomic", "_Generic",
        "_Noreturn", "_Static_assert", "_Thread_local", "asm", "typeof", "bool", "catch",
        "class", "const_cast", "delete", "dynamic_cast", "explicit", "false", "friend",
        "mutable", "namespace", "new", "operator", "private", "protected", "public",
        "reinterpret_cast", "static_cast", "template", "this", "throw", "true", "try",
        "typeid", "typename", "using", "virtual", "wchar_t", "and", "and_eq", "bitand",
        "bitor", "compl", "not", "not_eq", "or", "or_eq", "xor", "xor_eq", "unix", "errno",
        "mips", "sparc", "i386", "linux",
    )
)


def c_name(name: str, protect: bool = True) -> str:
    """A QAPI name as a C identifier: '-', '.' and '+' become '_'."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if protect and out in _PROTECTED:
        return "q_" + out
    return out


def camel_to_upper(name: str) -> str:
    """'MigrationStatus' -> 'MIGRATION_STATUS', as QAPI names enum constants.

    An '_' goes before an upper-case letter that follows a lower-case letter or
    a digit, and before the last letter of an upper-case run that is followed
    by a lower-case letter, unless that run starts the name and is two letters
    long ('QCrypto' -> 'QCRYPTO', but 'IOThread' -> 'IO_THREAD').
    """
    out = name[0]
    for i in range(1, len(name)):
        ch, prev = name[i], name[i - 1]
        if ch.isupper() and (prev.islower() or prev.isdigit()):
            if out[-1] != "_":
                out += "_"
        elif ch.islower() and prev.isupper() and len(out) > 2 and out[-2].isalnum():
            out = out[:-1] + "_" + out[-1]
        out += ch
    return c_name(out.upper(), protect=False).lstrip("_")


def enum_const(type_name: str, value: str, prefix: str | None = None) -> str:
    head = prefix if prefix is not None else camel_to_upper(type_name)
    return f"{head}_{c_name(value, protect=False).upper()}"


# --------------------------------------------------------------------------
# The schema as types.

_BUILTIN_C = {
    "str": "char *",
    "number": "double",
    "int": "int64_t",
    "int8": "int8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
    "uint8": "uint8_t",
    "uint16": "uint16_t",
    "uint32": "uint32_t",
    "uint64": "uint64_t",
    "size": "uint64_t",
    "bool": "bool",
    "any": "QObject *",
    "null": "QNull *",
}
_QTYPE_VALUES = ("none", "qnull", "qnum", "qstring", "qdict", "qlist", "qbool")


@dataclass
class Member:
    name: str  # as in the schema, without the '*' of optional members
    type: str  # a type name, or '[Elem]' for an array
    optional: bool = False
    cond: str = ""  # C preprocessor condition, "" when unconditional


@dataclass
class Definition:
    meta: str  # enum, struct, union, alternate, command, event
    name: str
    module: str
    expr: dict[str, Json]
    cond: str = ""


@dataclass
class Schema:
    modules: list[str] = field(default_factory=list)  # in first-include order
    includes: dict[str, list[str]] = field(default_factory=dict)  # module -> modules
    defs: list[Definition] = field(default_factory=list)
    types: dict[str, Definition] = field(default_factory=dict)
    arrays: set[str] = field(default_factory=set)  # element types used in arrays
    problems: list[str] = field(default_factory=list)

    def header(self, kind: str, module: str) -> str:
        """'qapi-types-migration.h'; the main file's module is 'qapi-types.h'."""
        return f"qapi-{kind}.h" if module == self.modules[0] else f"qapi-{kind}-{module}.h"

    def deps(self, kind: str, module: str) -> list[str]:
        """The headers of the modules this one includes; the main file's
        headers include every module's (the umbrella 'qapi-types.h')."""
        mods = self.modules[1:] if module == self.modules[0] else self.includes.get(module, [])
        return [self.header(kind, m) for m in mods]

    def kind(self, tname: str) -> str:
        if tname.startswith("["):
            return "array"
        if tname in _BUILTIN_C:
            return "builtin"
        if tname == "QType":
            return "enum"
        d = self.types.get(tname)
        return d.meta if d is not None else "unknown"

    def c_type(self, tname: str) -> str:
        """The C type of a member or return value (with a trailing ' *' for pointers)."""
        if tname.startswith("["):
            return self.list_name(tname[1:-1]) + " *"
        if tname in _BUILTIN_C:
            return _BUILTIN_C[tname]
        if self.kind(tname) == "enum":
            return c_name(tname)
        return c_name(tname) + " *"

    def c_param(self, tname: str) -> str:
        # Commands and events take strings they do not own.
        return "const char *" if tname == "str" else self.c_type(tname)

    @staticmethod
    def list_name(elem: str) -> str:
        return c_name(elem, protect=False) + "List"  # intList, not q_intList

    def needs_has(self, m: Member) -> bool:
        """Optional members carry a has_ flag unless absence shows as NULL; an
        array keeps it, to tell absent from empty."""
        if not m.optional:
            return False
        return m.type.startswith("[") or not self.c_type(m.type).endswith("*")

    def members_of(self, data: Json) -> list[Member]:
        """The members of a 'data' or 'base' given inline or by type name (base
        members first, recursively)."""
        if isinstance(data, str):
            d = self.types.get(data)
            if d is None or d.meta not in ("struct", "union"):
                return []
            out = self.members_of(d.expr.get("base", {}))
            if d.meta == "struct":
                out += self.members_of(d.expr.get("data", {}))
            return out
        if not isinstance(data, dict):
            return []
        members: list[Member] = []
        for key, val in data.items():
            cond: Json = ""
            if isinstance(val, dict):
                cond = val.get("if", "")
                val = val.get("type", "")
            members.append(
                Member(key.lstrip("*"), _type_name(val), key.startswith("*"), c_cond(cond))
            )
        return members


def _type_name(val: Json) -> str:
    if isinstance(val, list) and val and isinstance(val[0], str):
        return f"[{val[0]}]"
    return val if isinstance(val, str) else ""


def c_cond(cond: Json) -> str:
    """A QAPI 'if' as a C preprocessor expression ("" for none)."""
    if isinstance(cond, str):
        return f"defined({cond})" if cond else ""
    if isinstance(cond, dict) and len(cond) == 1:
        ((op, arg),) = cond.items()
        if op == "not":
            return f"!({c_cond(arg)})" if c_cond(arg) else ""
        if op in ("all", "any") and isinstance(arg, list):
            parts = [f"({c_cond(a)})" for a in arg if c_cond(a)]
            return (" && " if op == "all" else " || ").join(parts)
    return ""


_META = ("enum", "struct", "union", "alternate", "command", "event")


def load_schema(root: str, main: str = "qapi/qapi-schema.json") -> Schema:
    """Read the schema from its main file, following 'include' directives; a
    file is read once, where it is first included (as QAPI does)."""
    schema = Schema()
    seen: set[str] = set()

    def read(path: str) -> None:
        module = module_name(path)
        seen.add(os.path.normpath(path))
        schema.modules.append(module)
        schema.includes[module] = []
        try:
            with open(path, encoding="utf-8") as fh:
                exprs = parse_schema(fh.read())
        except (OSError, UnicodeDecodeError, SchemaError) as exc:
            schema.problems.append(f"{os.path.relpath(path, root)}: {exc}")
            return
        for expr in exprs:
            inc = expr.get("include")
            if isinstance(inc, str):
                sub = os.path.normpath(os.path.join(os.path.dirname(path), inc))
                schema.includes[module].append(module_name(sub))
                if sub not in seen:
                    read(sub)
                continue
            for meta in _META:
                name = expr.get(meta)
                if isinstance(name, str):
                    d = Definition(meta, name, module, expr, c_cond(expr.get("if", "")))
                    schema.defs.append(d)
                    if meta not in ("command", "event"):
                        schema.types[name] = d
                    break

    main_path = os.path.join(root, main)
    if os.path.isfile(main_path):
        read(main_path)
    _collect_arrays(schema)
    return schema


def module_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _collect_arrays(schema: Schema) -> None:
    def note(val: Json) -> None:
        if isinstance(val, list) and val and isinstance(val[0], str):
            schema.arrays.add(val[0])
        elif isinstance(val, dict):
            note(val.get("type", ""))

    for d in schema.defs:
        for key in ("data", "base"):
            data = d.expr.get(key)
            if isinstance(data, dict) and d.meta != "enum":
                for val in data.values():
                    note(val)
        note(d.expr.get("returns", ""))


# --------------------------------------------------------------------------
# Writing the QAPI headers.


def _guarded(cond: str, lines: list[str]) -> list[str]:
    return [f"#if {cond}", *lines, f"#endif /* {cond} */"] if cond and lines else lines


def _header(name: str, includes: list[str], body: list[str]) -> str:
    guard = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    out = [
        f"/* Synthesised by reviewer (no-build mode): a stand-in for {name}. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        *(f'#include "{inc}"' for inc in includes),
        "",
        *body,
        "",
        f"#endif /* {guard} */",
        "",
    ]
    return "\n".join(out)


def _enum_lines(tname: str, values: list[tuple[str, str]], prefix: str | None) -> list[str]:
    """values: (name, condition)."""
    cname = c_name(tname)
    out = [f"typedef enum {cname} {{"]
    for value, cond in values:
        out += _guarded(cond, [f"    {enum_const(tname, value, prefix)},"])
    out += [
        f"    {enum_const(tname, '_MAX', prefix)},",
        f"}} {cname};",
        f"#define {cname}_str(val) qapi_enum_lookup(&{cname}_lookup, (val))",
        f"extern const QEnumLookup {cname}_lookup;",
        "",
    ]
    return out


def _enum_values(expr: dict[str, Json]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    data = expr.get("data", [])
    for v in data if isinstance(data, list) else []:
        if isinstance(v, str):
            out.append((v, ""))
        elif isinstance(v, dict) and isinstance(v.get("name"), str):
            out.append((str(v["name"]), c_cond(v.get("if", ""))))
    return out


def _free_lines(cname: str) -> list[str]:
    return [
        f"void qapi_free_{cname}({cname} *obj);",
        "#ifdef G_DEFINE_AUTOPTR_CLEANUP_FUNC",
        f"G_DEFINE_AUTOPTR_CLEANUP_FUNC({cname}, qapi_free_{cname})",
        "#endif",
        "",
    ]


def _member_lines(schema: Schema, members: list[Member], indent: str = "    ") -> list[str]:
    out: list[str] = []
    for m in members:
        name = c_name(m.name)
        lines = [f"{indent}bool has_{name};"] if schema.needs_has(m) else []
        lines.append(f"{indent}{_decl(schema.c_type(m.type), name)};")
        out += _guarded(m.cond, lines)
    return out


def _decl(ctype: str, name: str) -> str:
    return f"{ctype}{name}" if ctype.endswith("*") else f"{ctype} {name}"


def _variants(schema: Schema, d: Definition) -> list[tuple[str, str, str]]:
    """(C member name, C type, condition) of a union's or alternate's branches."""
    out: list[tuple[str, str, str]] = []
    data = d.expr.get("data", {})
    simple = d.meta == "union" and "discriminator" not in d.expr
    for key, val in (data.items() if isinstance(data, dict) else []):
        cond: Json = ""
        if isinstance(val, dict):
            cond = val.get("if", "")
            val = val.get("type", "")
        tname = _type_name(val)
        if simple:
            # Old trees' simple unions wrap each branch: u.branch.data.
            ctype = f"struct {{ {_decl(schema.c_type(tname), 'data')}; }}"
        elif schema.kind(tname) in ("struct", "union"):
            ctype = c_name(tname)  # object branches are held by value
        else:
            ctype = schema.c_type(tname)
        out.append((c_name(key), ctype, c_cond(cond)))
    return out


def _struct_lines(schema: Schema, d: Definition) -> list[str]:
    cname = c_name(d.name)
    body: list[str] = []
    if d.meta == "struct":
        body = _member_lines(schema, schema.members_of(d.name))
    elif d.meta == "union":
        base = d.expr.get("base", {})
        if "discriminator" in d.expr:
            body = _member_lines(schema, schema.members_of(base))
        else:
            body = [f"    {cname}Kind type;"]
        tag = d.expr.get("discriminator", "type")
        body += _union_body(schema, d, f"union tag is @{tag}")
    elif d.meta == "alternate":
        body = ["    QType type;", *_union_body(schema, d, "alternate")]
    if not body:
        body = ["    char qapi_dummy_for_empty_struct;"]
    return [f"struct {cname} {{", *body, "};", "", *_free_lines(cname)]


def _union_body(schema: Schema, d: Definition, note: str) -> list[str]:
    variants = _variants(schema, d)
    if not variants:
        return []
    out = [f"    union {{ /* {note} */"]
    for name, ctype, cond in variants:
        out += _guarded(cond, [f"        {_decl(ctype, name)};"])
    return [*out, "    } u;"]


def _by_value_deps(schema: Schema, d: Definition) -> list[str]:
    """Types a struct holds by value (object branches of flat unions and
    alternates): their struct must be complete first."""
    if not (d.meta == "alternate" or (d.meta == "union" and "discriminator" in d.expr)):
        return []
    data = d.expr.get("data", {})
    out: list[str] = []
    for val in data.values() if isinstance(data, dict) else []:
        tname = _type_name(val.get("type", "") if isinstance(val, dict) else val)
        if schema.kind(tname) in ("struct", "union"):
            out.append(tname)
    return out


def _list_lines(schema: Schema, elem: str) -> list[str]:
    lname = schema.list_name(elem)
    value = schema.c_type(elem)
    return [
        f"struct {lname} {{",
        f"    {lname} *next;",
        f"    {_decl(value, 'value')};",
        "};",
        "",
        *_free_lines(lname),
    ]


def _types_header(schema: Schema, module: str) -> str:
    defs = [d for d in schema.defs if d.module == module]
    types = [d for d in defs if d.meta in ("enum", "struct", "union", "alternate")]
    forward: list[str] = []
    bodies: list[str] = []
    for d in types:
        cname = c_name(d.name)
        lines: list[str] = []
        if d.meta == "enum":
            lines = _enum_lines(d.name, _enum_values(d.expr), _str_or_none(d.expr.get("prefix")))
        else:
            data = d.expr.get("data")
            if d.meta == "union" and "discriminator" not in d.expr and isinstance(data, dict):
                # Old trees' simple unions: an implicit enum of the branches.
                lines = _enum_lines(d.name + "Kind", [(k, "") for k in data], None)
            lines.append(f"typedef struct {cname} {cname};")
        if d.name in schema.arrays:
            lname = schema.list_name(d.name)
            lines.append(f"typedef struct {lname} {lname};")
        forward += _guarded(d.cond, lines)
    # Struct bodies in order, each after the structs it holds by value.
    done: set[str] = set()

    def emit(d: Definition) -> None:
        if d.name in done:
            return
        done.add(d.name)
        for dep in _by_value_deps(schema, d):
            dd = schema.types.get(dep)
            if dd is not None and dd.module == module:
                emit(dd)
        lines = [] if d.meta == "enum" else _struct_lines(schema, d)
        if d.name in schema.arrays:
            lines += _list_lines(schema, d.name)
        bodies.extend(_guarded(d.cond, lines))

    for d in types:
        emit(d)
    includes = ["qapi/qapi-builtin-types.h", *schema.deps("types", module)]
    return _header(schema.header("types", module), includes, [*forward, "", *bodies])


def _str_or_none(val: Json | None) -> str | None:
    return val if isinstance(val, str) else None


def _visit_header(schema: Schema, module: str) -> str:
    body: list[str] = []
    for d in schema.defs:
        if d.module != module or d.meta in ("command", "event"):
            continue
        cname = c_name(d.name)
        lines: list[str] = []
        if d.meta == "enum":
            lines.append(_visit_proto(cname, f"{cname} *obj"))
        else:
            if d.meta != "alternate":
                lines.append(
                    f"bool visit_type_{cname}_members(Visitor *v, {cname} *obj, Error **errp);"
                )
            lines.append(_visit_proto(cname, f"{cname} **obj"))
        if d.name in schema.arrays:
            lname = schema.list_name(d.name)
            lines.append(_visit_proto(lname, f"{lname} **obj"))
        body += _guarded(d.cond, lines)
    includes = ["qapi/qapi-builtin-visit.h", schema.header("types", module)]
    includes += schema.deps("visit", module)
    return _header(schema.header("visit", module), includes, body)


def _visit_proto(cname: str, obj: str) -> str:
    return f"bool visit_type_{cname}(Visitor *v, const char *name, {obj}, Error **errp);"


def _params(schema: Schema, d: Definition) -> list[str]:
    data = d.expr.get("data")
    if data is None:
        return []
    if d.expr.get("boxed") is True and isinstance(data, str):
        return [f"{c_name(data)} *arg"]
    out: list[str] = []
    for m in schema.members_of(data):
        name = c_name(m.name)
        if schema.needs_has(m):
            out.append(f"bool has_{name}")
        out.append(_decl(schema.c_param(m.type), name))
    return out


def _commands_header(schema: Schema, module: str) -> str:
    body: list[str] = []
    for d in schema.defs:
        if d.module != module or d.meta != "command" or d.expr.get("gen") is False:
            continue  # 'gen': false commands are declared by hand, differently
        returns = d.expr.get("returns")
        ret = schema.c_type(_type_name(returns)) if returns else "void"
        marker = "coroutine_fn" if d.expr.get("coroutine") is True else ""
        params = ", ".join([*_params(schema, d), "Error **errp"])
        name = c_name(d.name, protect=False)
        if not marker:
            proto = _decl(ret, f"qmp_{name}({params})")
        elif ret.endswith("*"):
            # Before a pointer return type: after the '*' it would qualify
            # the pointer, not the function.
            proto = f"{marker} {ret}qmp_{name}({params})"
        else:
            proto = f"{ret} {marker} qmp_{name}({params})"  # where QEMU writes it
        body += _guarded(d.cond, [proto + ";"])
    includes = [*schema.deps("commands", module), schema.header("types", module)]
    return _header(schema.header("commands", module), includes, body)


def _events_header(schema: Schema, module: str) -> str:
    body: list[str] = []
    for d in schema.defs:
        if d.module != module or d.meta != "event":
            continue
        params = ", ".join(_params(schema, d)) or "void"
        name = c_name(d.name.lower(), protect=False)
        body += _guarded(d.cond, [f"void qapi_event_send_{name}({params});"])
    includes = [*schema.deps("events", module), "qapi/util.h", schema.header("types", module)]
    return _header(schema.header("events", module), includes, body)


def _builtin_headers() -> dict[str, str]:
    types: list[str] = [f"typedef struct {t}List {t}List;" for t in _BUILTIN_C]
    types.append("")
    types += _enum_lines("QType", [(v, "") for v in _QTYPE_VALUES], "QTYPE")
    visit = [_visit_proto(f"{t}List", f"{t}List **obj") for t in _BUILTIN_C]
    visit.append(_visit_proto("QType", "QType *obj"))
    for t, ctype in _BUILTIN_C.items():
        types += [
            f"struct {t}List {{",
            f"    {t}List *next;",
            f"    {_decl(ctype, 'value')};",
            "};",
            "",
            *_free_lines(f"{t}List"),
        ]
    return {
        "qapi/qapi-builtin-types.h": _header("qapi-builtin-types.h", ["qapi/util.h"], types),
        "qapi/qapi-builtin-visit.h": _header(
            "qapi-builtin-visit.h", ["qapi/visitor.h", "qapi/qapi-builtin-types.h"], visit
        ),
    }


def qapi_headers(schema: Schema) -> dict[str, str]:
    """Every QAPI header, by path relative to the include directory."""
    out = _builtin_headers()
    for module in schema.modules:
        out["qapi/" + schema.header("types", module)] = _types_header(schema, module)
        out["qapi/" + schema.header("visit", module)] = _visit_header(schema, module)
        out["qapi/" + schema.header("commands", module)] = _commands_header(schema, module)
        out["qapi/" + schema.header("events", module)] = _events_header(schema, module)
    events = [d for d in schema.defs if d.meta == "event"]
    emit = _enum_lines("QAPIEvent", [(d.name, d.cond) for d in events], "QAPI_EVENT")
    out["qapi/qapi-emit-events.h"] = _header("qapi-emit-events.h", ["qapi/util.h"], emit)
    return out


# --------------------------------------------------------------------------
# Trace headers.

# [properties] name(arguments) "format": the arguments end at the ')' before the
# format string (formats contain parentheses of their own).
_TRACE_LINE = re.compile(r'^((?:[a-z_]+\s+)*)([A-Za-z_]\w*)\((.*?)\)\s*(?:".*)?$')
_TRACE_INCLUDE = re.compile(r'#\s*include\s+"trace/(trace-[\w-]+\.h)"')
_SKIP_DIRS = {"roms", "subprojects", "tests", "build", "pyvenv", "node_modules"}


def trace_event_files(root: str) -> list[str]:
    """Every trace-events file of the tree (relative paths), outside build
    directories, tests and bundled third-party code."""
    out: list[str] = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(
            x
            for x in dirs
            if not x.startswith(".")
            and x not in _SKIP_DIRS
            and not os.path.isfile(os.path.join(d, x, "meson-info", "meson-info.json"))
            and not os.path.isfile(os.path.join(d, x, "compile_commands.json"))
        )
        if "trace-events" in files:
            out.append(os.path.relpath(os.path.join(d, "trace-events"), root))
    return out


def trace_header_name(root: str, rel: str) -> str:
    """The header the directory's trace.h includes; else QEMU's naming rule
    (the directory path with '/' as '_', 'root' for the top)."""
    d = os.path.dirname(rel)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open(os.path.join(root, d, "trace.h"), encoding="utf-8") as fh:
            m = _TRACE_INCLUDE.search(fh.read())
        if m:
            return m.group(1)
    return "trace-" + (re.sub(r"[^A-Za-z0-9]", "_", d) if d else "root") + ".h"


def trace_header(name: str, text: str) -> str:
    body = [
        "#include <stdint.h>",
        '#if __has_include("trace/control.h")',
        '#include "trace/control.h"',
        "#endif",
        "",
    ]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _TRACE_LINE.match(line)
        if m is None:
            continue
        props, event, args = m.group(1).split(), m.group(2), m.group(3).strip() or "void"
        up = event.upper()
        # What trace_event_get_state*() and the backends' tests expand to.
        body += [
            f"#define TRACE_{up}_ENABLED {0 if 'disable' in props else 1}",
            f"extern uint16_t _TRACE_{up}_DSTATE;",
            f"#define TRACE_{up}_BACKEND_DSTATE() 0",
            f"static inline void trace_{event}({args}) {{ }}",
        ]
    return _header(f"trace/{name}", [], body)


# --------------------------------------------------------------------------
# The directory.


def input_files(root: str) -> list[str]:
    """The inputs of the stand-ins, relative to root, in a stable order."""
    qapi = os.path.join(root, "qapi")
    schema = sorted(
        os.path.join("qapi", f) for f in (os.listdir(qapi) if os.path.isdir(qapi) else [])
        if f.endswith(".json")
    )
    extra = [f for f in ("VERSION",) if os.path.isfile(os.path.join(root, f))]
    return schema + trace_event_files(root) + extra


def inputs_digest(root: str, files: list[str]) -> str:
    """Of the inputs and of this generator's own source, so that a change to
    either regenerates (no version number to forget)."""
    with open(__file__, "rb") as fh:
        h = hashlib.sha256(fh.read())
    for rel in files:
        h.update(rel.encode() + b"\0")
        with contextlib.suppress(OSError), open(os.path.join(root, rel), "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def generate(root: str, files: list[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """All stand-in headers (relative path -> text) and problems met."""
    files = input_files(root) if files is None else files
    schema = load_schema(root)
    out = qapi_headers(schema) if schema.modules else {}
    for rel in files:
        if os.path.basename(rel) != "trace-events":
            continue
        try:
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        name = trace_header_name(root, rel)
        out[f"trace/{name}"] = trace_header(name, text)
    out["qemu-version.h"] = _version_header(root)
    return out, schema.problems


def _version_header(root: str) -> str:
    version = ""
    with contextlib.suppress(OSError), open(os.path.join(root, "VERSION"), encoding="utf-8") as fh:
        version = fh.read().strip()
    body = [
        '#define QEMU_PKGVERSION ""',
        f'#define QEMU_FULL_VERSION "{version}"',
    ]
    return _header("qemu-version.h", [], body)


def generated_include_dir(root: str, cache_root: str | None = None,
                          replaced: dict[str, bytes | None] | None = None
                          ) -> tuple[str, list[str]]:
    """The directory of stand-ins for this tree, brought up to date; and the
    problems met (unreadable schema files). replaced: filled with what each
    stand-in rewritten here held before (None: it did not exist), which a
    scan hands to the fact cache's carry-over like the tree's own changes."""
    root = os.path.normpath(os.path.abspath(root))
    base = cache_root or tempfile.gettempdir()
    tag = hashlib.sha256(root.encode()).hexdigest()[:12]
    d = os.path.join(base, f"reviewer-generated-{tag}")
    files = input_files(root)
    digest = inputs_digest(root, files)
    stamp = os.path.join(d, ".inputs")
    with contextlib.suppress(OSError), open(stamp, encoding="utf-8") as fh:
        if fh.read() == digest:
            return d, []
    headers, problems = generate(root, files)
    for rel, text in headers.items():
        _write_if_changed(os.path.join(d, rel), text, replaced)
    # A stand-in this version no longer generates (its trace-events file or
    # schema was removed) goes: a TU that includes it must not find it.
    wanted = {os.path.normpath(os.path.join(d, rel)) for rel in headers}
    for top, _, names in os.walk(d):
        for name in names:
            path = os.path.normpath(os.path.join(top, name))
            if path == os.path.normpath(stamp) or path in wanted or name.endswith(".tmp"):
                continue
            with contextlib.suppress(OSError):
                if replaced is not None:
                    with open(path, "rb") as fb:
                        replaced[path] = fb.read()
                os.unlink(path)
    _write_if_changed(stamp, digest)
    return d, problems


def _write_if_changed(path: str, text: str,
                      replaced: dict[str, bytes | None] | None = None) -> None:
    """Atomic, and only on a change: an unchanged header keeps its mtime and
    the fact cache its entries."""
    old: bytes | None = None
    with contextlib.suppress(OSError), open(path, "rb") as fb:
        old = fb.read()
    if old is not None and old == text.encode("utf-8"):
        return
    if replaced is not None:
        replaced[path] = old
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
