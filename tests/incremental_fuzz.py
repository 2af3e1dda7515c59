"""A differential fuzzer for reviewer.analysis.incremental: series of
versions of hand-built facts, each analysed with the flows reused from the
version before (`changed` as reviewer.scan._Analyst computes it: the TU files
whose facts are not the same object) and from scratch. Findings, every
function's contexts and chains, and every flow must be equal.

Edits between versions: new bodies, a call changed while its Function stays
equal, functions added first (shifting call indices) or last, removed, made
static, moved or duplicated to another TU, reordered; a header of static
inline functions included or not, edited; TUs re-parsed into an equal new
object, switched between modes, reordered.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict

from reviewer.analysis.bql import HELD, NOT_HELD
from reviewer.analysis.engine import analyze
from reviewer.analysis.incremental import export, reusable
from reviewer.analysis.program import Program
from reviewer.extract.facts import Call, FactSet, Function, Node, Param, TUFacts
from reviewer.model import load_model

MODEL = load_model()

NAMES = ["qmp_a", "qmp_b", "f1", "f2", "f3", "f4", "f5", "worker", "s1", "s2",
         "qemu_loadvm_section_part_end", "vmstate_load", "ext_undef"]
LIBS = [("bql_lock_impl", "bql_lock"), ("bql_unlock", ""), ("qemu_cond_wait_bql", ""),
        ("memory_region_transaction_begin", ""), ("exit", ""), ("rcu_read_lock", ""),
        ("qemu_coroutine_yield", ""), ("qemu_thread_join", ""), ("qemu_sem_wait", ""),
        ("qdev_get_machine", "")]
CONDS = ["bql_locked()", "!bql_locked()", "bql_held", "!bql_held", "locked", "!locked",
         "qemu_in_coroutine()", "!qemu_in_coroutine()", "x", "x && bql_locked()",
         "bql_held || y", "se->vmsd"]
ASSERTS = ["bql_locked()", "!bql_locked()", "bql_held == bql_locked()",
           "!bql_held == bql_locked()", "locked"]
GUARDS = [("bql_auto_lock", "BQL_LOCK_GUARD"), ("with_bql_held_auto_lock", "WITH_BQL_HELD"),
          ("with_bql_release_auto_unlock", "WITH_BQL_RELEASED"),
          ("rcu_read_auto_lock", "RCU_READ_LOCK_GUARD"), ("qemu_lockable_auto_lock", "")]

# A statement spec (no indices): ("call", callee, macro, values, param_args, fn_args)
# ("if", cond, then, else) ("loop", kind, cond, body) ("scope", guard, macro, values,
# param_args, name, body) ("assert", text) ("set", name, value) ("return",)
# ("break",) ("continue",) ("goto", label) ("label", label) ("switch", body)
# ("case", name)


def gen_call(r: random.Random, params: list[str]) -> tuple:
    if r.random() < 0.45:
        callee, macro = r.choice(LIBS)
        return ("call", callee, macro, (), (), ())
    if r.random() < 0.12:
        fn = r.choice(NAMES)
        return ("call", "qemu_thread_create", "", (None, '"t"', None, "NULL", "0"), (),
                ((2, fn),))
    callee = r.choice([*NAMES, "vmstate_load"])
    k = r.randint(0, 2)
    vals = tuple(r.choice(["true", "false", None, "1"]) for _ in range(k))
    pa = tuple((i, "bql_held") for i, v in enumerate(vals)
               if v is None and "bql_held" in params and r.random() < 0.7)
    return ("call", callee, "", vals, pa, ())


def gen_block(r: random.Random, params: list[str], depth: int, n: int | None = None) -> list:
    out: list = []
    for _ in range(n if n is not None else r.randint(0, 4)):
        x = r.random()
        if x < 0.4 or depth > 2:
            out.append(gen_call(r, params))
        elif x < 0.55:
            out.append(("if", r.choice(CONDS), gen_block(r, params, depth + 1),
                        gen_block(r, params, depth + 1) if r.random() < 0.5 else []))
        elif x < 0.62:
            out.append(("loop", r.choice(["for", "while", "do"]), "c",
                        gen_block(r, params, depth + 1)
                        + ([("break",)] if r.random() < 0.3 else [])
                        + ([("continue",)] if r.random() < 0.2 else [])))
        elif x < 0.7:
            g, m = r.choice(GUARDS)
            vals: tuple = ()
            pa: tuple = ()
            if m.startswith("WITH_BQL"):
                if "bql_held" in params and r.random() < 0.6:
                    vals, pa = (None,), ((0, "bql_held"),)
                else:
                    vals = (r.choice(["true", "false"]),)
            out.append(("scope", g, m, vals, pa, r.choice(["block", "for"]),
                        gen_block(r, params, depth + 1)))
        elif x < 0.78:
            out.append(("assert", r.choice(ASSERTS)))
        elif x < 0.84:
            out.append(("set", "locked", r.choice(["true", "false"])))
        elif x < 0.88:
            out.append(("return",))
        elif x < 0.92:
            out.append(("goto", "out"))
        elif x < 0.95:
            out.append(("label", "out"))
        else:
            out.append(("switch", [("case", "1"), *gen_block(r, params, depth + 1),
                                   ("case", "default"), *gen_block(r, params, depth + 1)]))
    return out


def gen_fn(r: random.Random, name: str, home: str, line: int, static: bool | None = None) -> dict:
    params = ["bql_held"] if r.random() < 0.4 else []
    if r.random() < 0.3:
        params = ["p", *params]
    return {"name": name, "home": home, "static": (r.random() < 0.3) if static is None
            else static, "params": params, "line": line,
            "body": gen_block(r, params, 0, r.randint(1, 6))}


class Builder:
    """Turns a spec into TUFacts; call indices by order of appearance."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec

    def tu(self, file: str) -> TUFacts:
        t = self.spec["tus"][file]
        fns = ([*self.spec["header"], *t["fns"]] if t["inc"] else list(t["fns"]))
        # what static names this TU sees: its own statics and the header's
        statics = {f["name"]: f["home"] for f in fns if f["static"]}
        calls: list[Call] = []
        functions: list[Function] = []
        for f in fns:
            ln = [f["line"]]

            def node(s: tuple, f: dict = f, ln: list = ln) -> Node:
                ln[0] += 1
                k = s[0]
                if k == "call":
                    _, callee, macro, vals, pa, fa = s
                    calls.append(Call(
                        caller=f["name"], callee=callee, via="direct", file=f["home"],
                        line=ln[0], col=3, args=tuple(str(v) for v in vals), values=vals,
                        macro=macro, callee_static=callee in statics,
                        callee_file=statics.get(callee, ""), param_args=pa, fn_args=fa,
                        caller_file=f["home"], noreturn=callee == "exit"))
                    return Node("call", ln[0], call=len(calls) - 1)
                if k == "if":
                    a = tuple(node(x) for x in s[2])
                    b = tuple(node(x) for x in s[3])
                    return Node("if", ln[0], text=s[1], branches=(a, b))
                if k == "loop":
                    return Node("loop", ln[0], text=s[2], name=s[1],
                                branches=(tuple(node(x) for x in s[3]),))
                if k == "scope":
                    _, g, m, vals, pa, nm, body = s
                    calls.append(Call(caller=f["name"], callee=g, via="direct", file=f["home"],
                                      line=ln[0], col=3, values=vals, macro=m, param_args=pa,
                                      caller_file=f["home"]))
                    idx = len(calls) - 1
                    return Node("scope", ln[0], call=idx, name=nm,
                                branches=(tuple(node(x) for x in body),))
                if k == "assert":
                    return Node("assert", ln[0], text=s[1])
                if k == "set":
                    return Node("set", ln[0], name=s[1], text=s[2])
                if k in ("return", "break", "continue"):
                    return Node(k, ln[0])
                if k in ("goto", "label", "case"):
                    return Node(k, ln[0], name=s[1])
                if k == "switch":
                    return Node("switch", ln[0], text="v",
                                branches=(tuple(node(x) for x in s[1]),))
                raise AssertionError(k)

            body = tuple(node(s) for s in f["body"])
            functions.append(Function(
                name=f["name"], file=f["home"], line=f["line"], is_definition=True,
                is_static=f["static"], params=tuple(
                    Param(p, "bool" if p == "bql_held" else "int") for p in f["params"]),
                body=body, end_line=ln[0] + 1))
        return TUFacts(file=file, mode=t["mode"], functions=tuple(functions),
                       calls=tuple(calls))


def gen_spec(r: random.Random) -> dict:
    tus = {}
    line = 10
    for i in range(r.randint(1, 4)):
        file = f"d/t{i}.c"
        fns = []
        for name in r.sample(NAMES[:-1], r.randint(1, 4)):
            fns.append(gen_fn(r, name, file, line))
            line += 100
        tus[file] = {"fns": fns, "inc": r.random() < 0.6, "mode": r.choice(["plain", "build"])}
    header = [gen_fn(r, n, "d/h.h", 5000 + 100 * i, static=True)
              for i, n in enumerate(r.sample(NAMES[:-1], r.randint(0, 2)))]
    return {"tus": tus, "header": header, "order": list(tus), "next_line": line}


def mutate(r: random.Random, spec: dict) -> tuple[dict, set[str]]:
    """A new spec and the TU files to re-parse whatever their facts."""
    spec = copy.deepcopy(spec)
    reparse: set[str] = set()
    files = list(spec["tus"])
    for _ in range(r.randint(1, 3)):
        op = r.randrange(16)
        t = spec["tus"][r.choice(files)]
        if op == 0 and t["fns"]:  # new body
            f = r.choice(t["fns"])
            f["body"] = gen_block(r, f["params"], 0, r.randint(1, 6))
        elif op == 1 and t["fns"]:  # tweak one statement
            f = r.choice(t["fns"])
            if f["body"]:
                i = r.randrange(len(f["body"]))
                f["body"][i] = gen_block(r, f["params"], 1, 1)[0]
        elif op == 2:  # a new function at the start (shifts indices) or the end
            nm = r.choice(NAMES[:-1])
            if all(g["name"] != nm for g in t["fns"]):
                fn = gen_fn(r, nm, t["fns"][0]["home"] if t["fns"] else files[0],
                            spec["next_line"])
                fn["home"] = next(k for k, v in spec["tus"].items() if v is t)
                spec["next_line"] += 100
                if r.random() < 0.5:
                    t["fns"].insert(0, fn)
                else:
                    t["fns"].append(fn)
        elif op == 3 and len(t["fns"]) > 1:
            t["fns"].pop(r.randrange(len(t["fns"])))
        elif op == 4 and t["fns"]:
            f = r.choice(t["fns"])
            f["static"] = not f["static"]
        elif op == 5 and t["fns"] and len(files) > 1:  # move to another TU
            f = t["fns"].pop(r.randrange(len(t["fns"])))
            dst = r.choice(files)
            f["home"] = dst
            if all(g["name"] != f["name"] for g in spec["tus"][dst]["fns"]):
                spec["tus"][dst]["fns"].append(f)
        elif op == 6:
            t["inc"] = not t["inc"]
        elif op == 7 and spec["header"]:
            f = r.choice(spec["header"])
            f["body"] = gen_block(r, f["params"], 0, r.randint(1, 5))
        elif op == 8:
            r.shuffle(spec["order"])
        elif op == 9:
            reparse.add(r.choice(files))
        elif op == 10 and len(files) > 1:  # duplicate a global definition elsewhere
            src = r.choice(files)
            if spec["tus"][src]["fns"]:
                f = copy.deepcopy(r.choice(spec["tus"][src]["fns"]))
                dst = r.choice(files)
                if all(g["name"] != f["name"] for g in spec["tus"][dst]["fns"]):
                    f["home"] = dst
                    f["line"] = spec["next_line"]
                    spec["next_line"] += 100
                    spec["tus"][dst]["fns"].append(f)
        elif op == 11:
            t["mode"] = "build" if t["mode"] != "build" else "plain"
        elif op == 12 and t["fns"]:  # swap two functions' order in a TU
            r.shuffle(t["fns"])
        elif op == 13:  # a header function added or removed
            if spec["header"] and r.random() < 0.5:
                spec["header"].pop(r.randrange(len(spec["header"])))
            else:
                nm = r.choice(NAMES[:-1])
                if all(g["name"] != nm for g in spec["header"]):
                    spec["header"].insert(r.randrange(len(spec["header"]) + 1),
                                          gen_fn(r, nm, "d/h.h", spec["next_line"], True))
                    spec["next_line"] += 100
        if op == 14:  # only a call's arguments change: the Function stays equal
            for _ in range(5):
                f = r.choice(t["fns"]) if t["fns"] else None
                if f is None:
                    break
                calls = [i for i, s_ in enumerate(f["body"]) if s_[0] == "call"]
                if calls:
                    i = r.choice(calls)
                    c = list(f["body"][i])
                    c[1] = r.choice(NAMES + [x for x, _ in LIBS])
                    c[3] = tuple(r.choice(["true", "false", None]) for _ in range(r.randint(0, 2)))
                    c[4] = ()
                    f["body"][i] = tuple(c)
                    break
        elif op == 15 and spec["header"]:  # same for a header function
            f = r.choice(spec["header"])
            calls = [i for i, s_ in enumerate(f["body"]) if s_[0] == "call"]
            if calls:
                i = r.choice(calls)
                c = list(f["body"][i])
                c[1] = r.choice(NAMES + [x for x, _ in LIBS])
                f["body"][i] = tuple(c)
    return spec, reparse


def summary(analysis) -> dict:
    ctx = analysis.context
    out = {"findings": [asdict(f) for f in analysis.findings],
           "suppressed": [asdict(f) for f in analysis.suppressed]}
    for key in ctx.program.functions:
        out[f"reach {key}"] = [asdict(r) for r in ctx.contexts.reaches(key)]
    return out


def run_series(seed: int, root: str, versions: int = 6) -> str | None:
    """None, or what differed at the first version where reuse and a fresh
    analysis part."""
    r = random.Random(seed)
    spec = gen_spec(r)
    memo = None
    prev_tus: dict[str, TUFacts] = {}
    memo_tus: dict[str, TUFacts] = {}
    for v in range(versions):
        reparse: set[str] = set()
        if v:
            spec, reparse = mutate(r, spec)
        b = Builder(spec)
        tus: list[TUFacts] = []
        for file in spec["order"]:
            t = b.tu(file)
            old = prev_tus.get(file)
            if old is not None and old == t and file not in reparse:
                t = old  # the fact cache: the same object for facts that did not change
            tus.append(t)
        prev_tus = {t.file: t for t in tus}
        changed = ({f for f, t in prev_tus.items() if memo_tus.get(f) is not t}
                   | (memo_tus.keys() - prev_tus.keys()))
        graph = {}

        def reuse(program: Program, memo=memo, changed=changed, graph=graph):
            flows, shapes, cyclic = reusable(program, memo, set(changed))
            graph["g"] = (shapes, cyclic, set(k[0] for k in flows))
            return flows

        inc = analyze(FactSet(tus), MODEL, root=root, reuse=reuse, debug=True)
        fresh = analyze(FactSet(tus), MODEL, root=root, debug=True)
        si, sf = summary(inc), summary(fresh)
        fi, ff = inc.context.bql.flows, fresh.context.bql.flows
        problems = []
        if si != sf:
            for k in sorted(set(si) | set(sf)):
                if si.get(k) != sf.get(k):
                    problems.append(f"result {k}: reuse={si.get(k)!r}\n fresh={sf.get(k)!r}")
        for k in sorted(set(ff) - set(fi), key=repr):
            problems.append(f"flow {k} computed fresh, not with reuse")
        cyc = graph["g"][1]
        for k in sorted(set(fi), key=repr):
            if k in ff:
                if fi[k] != ff[k]:
                    problems.append(f"flow {k}: reuse={fi[k]} fresh={ff[k]}")
            elif k[0] not in cyc:
                got = fresh.context.bql.flow(*k)
                if got != fi[k]:
                    problems.append(f"flow {k} (reused only): reuse={fi[k]} fresh={got}")
        # every function's flows, both entries, no valuation (not cyclic ones:
        # their flows depend on query order)
        for key in inc.context.program.functions:
            if key in cyc:
                continue
            for e in (HELD, NOT_HELD):
                a = inc.context.bql.flow(key, e)
                c = fresh.context.bql.flow(key, e)
                if a != c:
                    problems.append(f"flow {(key, e)}: reuse={a} fresh={c}")
        if problems:
            return f"seed {seed} version {v}: changed={sorted(changed)} " \
                   f"reused fns={sorted(graph['g'][2])}\n" + "\n".join(problems[:8])
        memo = export(str(v), inc.context.bql.flows, graph["g"][0], graph["g"][1])
        memo_tus = prev_tus
    return None
