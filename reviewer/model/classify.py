"""Facts read through the API model: BQL operations, guards, assertions, context
branches, entry registrations, coroutine/RCU/trace calls.

Pure functions over TUFacts; the analysis and `reviewer facts` both use them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from reviewer.extract.facts import Call, Function, Node, TUFacts
from reviewer.model import ApiModel

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Cond:
    """A condition as the analysis understands it.

    kind: "bql_locked", "in_coroutine", "param" (a bool parameter), "param_eq_bql"
    (param == bql_locked()), or "other". `negated` flips it.
    """

    kind: str
    negated: bool = False
    param: str = ""


def _strip_parens(t: str) -> str:
    t = t.strip()
    while t.startswith("(") and t.endswith(")"):
        depth = 0
        for i, ch in enumerate(t):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(t) - 1:
                return t
        t = t[1:-1].strip()
    return t


@functools.lru_cache(maxsize=65536)
def split_conjuncts(text: str, op: str = "&&") -> tuple[str, ...]:
    """Top-level `a && b` pieces (an assert of a conjunction asserts each);
    with op="||", the disjuncts."""
    out: list[str] = []
    cur: list[str] = []
    depth, i = 0, 0
    text = _strip_parens(text)
    while i < len(text):
        ch = text[i]
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and text.startswith(op, i):
            out.append("".join(cur))
            cur = []
            i += 2
            continue
        cur.append(ch)
        i += 1
    out.append("".join(cur))
    return tuple(p.strip() for p in out if p.strip())


def classify_cond(text: str, model: ApiModel, params: frozenset[str] = frozenset()) -> Cond:
    t = _strip_parens(text)
    neg = False
    while t.startswith("!"):
        neg = not neg
        t = _strip_parens(t[1:])
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*\)", t)
    if m:
        fn = m.group(1)
        if fn in model.bql_locked:
            return Cond("bql_locked", neg)
        if fn in model.coroutine.get("query", frozenset()):
            return Cond("in_coroutine", neg)
        return Cond("other")
    for op, flip in (("==", False), ("!=", True)):
        if op in t:
            left, _, right = t.partition(op)
            left, right = _strip_parens(left), _strip_parens(right)
            if right == "NULL" and left in params and not _IDENT.match(left):
                # `se->vmsd == NULL` for an assumed `se->vmsd` (model [[assume]]);
                # plain names are flags and parameters, whose tests stay as written.
                return Cond("param", neg != (op == "=="), left)
            for a, b in ((left, right), (right, left)):
                cb = classify_cond(b, model, params)
                if cb.kind == "bql_locked" and not cb.negated and _IDENT.match(a) and (
                    a in params or a in model.state_params
                ):
                    return Cond("param_eq_bql", neg != flip, a)
            return Cond("other")
    # params may also hold conditions the model assumes (`se->vmsd`).
    if t in params or (_IDENT.match(t) and t in model.state_params):
        return Cond("param", neg, t)
    return Cond("other")


def iter_nodes(body: tuple[Node, ...]) -> Iterator[Node]:
    for n in body:
        yield n
        for br in n.branches:
            yield from iter_nodes(br)


def _fn_rows(tu: TUFacts) -> Iterator[Function]:
    for f in tu.functions:
        if f.is_definition and f.body:
            yield f


def view(tu: TUFacts, model: ApiModel) -> dict[str, list[dict[str, object]]]:
    """The classified fact lists of one TU, as plain data for JSON and templates."""
    bql_ops: list[dict[str, object]] = []
    guards: list[dict[str, object]] = []
    asserts: list[dict[str, object]] = []
    branches: list[dict[str, object]] = []
    entries: list[dict[str, object]] = []
    coroutine: list[dict[str, object]] = []
    rcu: list[dict[str, object]] = []
    trace: list[dict[str, object]] = []
    guard_calls: set[int] = set()
    for f in _fn_rows(tu):
        params = frozenset(p.name for p in f.params)
        for n in iter_nodes(f.body):
            if n.kind == "scope" and n.call >= 0:
                c = tu.calls[n.call]
                g = model.guards.get(c.callee)
                if g is None:
                    continue
                guard_calls.add(n.call)
                row: dict[str, object] = {
                    "function": f.name, "file": c.file, "line": c.line, "kind": g.kind,
                    "form": n.name, "macro": c.macro or g.macro,
                    "arg": ", ".join(c.args),
                }
                if g.kind.startswith(("bql_", "with_bql")):
                    bql_ops.append({**row, "op": g.kind})
                else:
                    guards.append(row)
            elif n.kind == "assert":
                for piece in split_conjuncts(n.text):
                    cond = classify_cond(piece, model, params)
                    asserts.append({
                        "function": f.name, "file": f.file, "line": n.line, "text": piece,
                        "kind": cond.kind, "negated": cond.negated, "param": cond.param,
                    })
            elif n.kind == "if":
                cond = classify_cond(n.text, model, params)
                if cond.kind != "other":
                    branches.append({
                        "function": f.name, "file": f.file, "line": n.line, "text": n.text,
                        "kind": cond.kind, "negated": cond.negated, "param": cond.param,
                    })
    for i, c in enumerate(tu.calls):
        base = {"function": c.caller, "file": c.file, "line": c.line, "callee": c.callee}
        op = model.bql_op(c.callee)
        if op and i not in guard_calls:
            bql_ops.append({**base, "op": op, "macro": c.macro, "arg": ", ".join(c.args)})
        cat = model.coroutine_category(c.callee)
        if cat:
            coroutine.append({**base, "category": cat})
        if c.callee in model.rcu_register | model.rcu_unregister | model.rcu_read_lock | (
            model.rcu_read_unlock | model.rcu_synchronize
        ):
            rcu.append(base)
        if model.is_trace(c.callee):
            trace.append(base)
        e = model.entries.get(c.callee)
        if e is not None:
            entries.append(_entry_row(c, e.context, e.fn, e.name, base))
    bql_ops.sort(key=lambda r: (str(r["file"]), int(str(r["line"]))))
    return {
        "bql_ops": bql_ops,
        "guards": guards,
        "asserts": asserts,
        "branches": branches,
        "entries": entries,
        "coroutine_calls": coroutine,
        "rcu_calls": rcu,
        "trace_calls": trace,
    }


def _entry_row(
    c: Call, context: str, fn_idx: tuple[int, ...], name_idx: int, base: dict[str, object]
) -> dict[str, object]:
    fns = dict(c.fn_args)
    prm = dict(c.param_args)
    targets = []
    for i in fn_idx:
        if i in fns:
            targets.append(fns[i])
        elif i in prm:
            targets.append(f"param:{prm[i]}")
        elif i < len(c.values) and c.values[i] in ("NULL", "0"):
            continue  # no callback in this slot
        elif i < len(c.args):
            targets.append(f"expr:{c.args[i]}")
    name = ""
    if name_idx >= 0:
        v = c.values[name_idx] if name_idx < len(c.values) else None
        if v:
            name = v
        elif name_idx in prm:
            name = f"param:{prm[name_idx]}"
        else:
            name = c.args[name_idx] if name_idx < len(c.args) else ""
    return {**base, "api": c.callee, "context": context, "entry": targets, "thread_name": name}
