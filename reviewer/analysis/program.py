"""The whole program as the analysis sees it: functions, resolved call edges,
struct-field slots, entry registrations (with wrappers derived), and the
parameters that carry the BQL state.

Built once from the facts and the API model; everything after it (BQL flow,
contexts, rules) reads it and never the raw TUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from reviewer.extract.facts import Call, FactSet, Function, TUFacts
from reviewer.model import ApiModel
from reviewer.model.classify import classify_cond, iter_nodes


@dataclass(frozen=True)
class Site:
    """A call site inside a function body."""

    fn: str  # caller key
    call: Call
    index: int  # index of the call in its TU (unique with tu)
    tu: str


@dataclass(frozen=True)
class Registration:
    """`fn` registered to run in `context` (thread, coroutine, bh, ...) at `site`."""

    context: str
    target: str  # function key
    thread_name: str
    site: Site
    api: str


@dataclass
class FunctionInfo:
    key: str
    fact: Function
    tu: TUFacts
    sites: dict[int, Site] = field(default_factory=dict)  # TU call index -> site
    state_params: tuple[str, ...] = ()  # bool params tied to the BQL state
    # bool params the analysis follows from call sites: the BQL-state ones and
    # any used as a branch condition (e.g. `iterable_only` choosing whether a
    # BQL-requiring step runs at all).
    valuation_params: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.fact.name

    @property
    def annotations(self) -> tuple[str, ...]:
        return self.fact.annotations


class Program:
    def __init__(self, facts: FactSet, model: ApiModel,
                 trace_events: dict[str, frozenset[str]] | None = None) -> None:
        self.model = model
        self.facts = facts
        self._resolved: dict[tuple[str, str, str], str] = {}
        self._callees: dict[tuple[str, int], tuple[list[str], str]] = {}
        self.functions: dict[str, FunctionInfo] = {}
        self.by_name: dict[str, list[str]] = {}
        self.annotations: dict[str, set[str]] = {}  # by name, from every declaration
        self.slots: dict[str, set[str]] = {}  # "Struct.field" -> function keys
        self.trace_events = trace_events or {}
        self.degraded_tus = [tu for tu in facts.tus if tu.degraded]
        self._index(facts)
        self.registrations: list[Registration] = []
        self._registrations()

    # -- building ----------------------------------------------------------------

    def _index(self, facts: FactSet) -> None:
        for tu in facts.tus:
            for f in tu.functions:
                if f.annotations:
                    self.annotations.setdefault(f.name, set()).update(f.annotations)
                if not f.is_definition:
                    continue
                old = self.functions.get(f.key)
                if old is not None and _rank(old.tu, old.fact) <= _rank(tu, f):
                    continue
                info = FunctionInfo(f.key, f, tu)
                for n in iter_nodes(f.body):
                    if n.call >= 0 and n.kind in ("call", "scope"):
                        info.sites[n.call] = Site(f.key, tu.calls[n.call], n.call, tu.file)
                self.functions[f.key] = info
                if old is None:
                    self.by_name.setdefault(f.name, []).append(f.key)
        for tu in facts.tus:
            for st in tu.field_stores:
                key = self.resolve_name(st.function, st.file, st.function_key)
                if key:
                    self.slots.setdefault(st.slot, set()).add(key)
        for info in self.functions.values():
            info.state_params = self._state_params(info)
            info.valuation_params = self._valuation_params(info)

    def _state_params(self, info: FunctionInfo) -> tuple[str, ...]:
        """bool parameters that say whether the BQL is held: listed in the model,
        passed to a WITH_BQL_* guard, or asserted equal to bql_locked()."""
        bools = [p.name for p in info.fact.params if p.type in ("bool", "_Bool")]
        if not bools:
            return ()
        tied = {p for p in bools if p in self.model.state_params}
        for n in iter_nodes(info.fact.body):
            if n.kind == "scope" and n.call >= 0:
                c = info.tu.calls[n.call]
                g = self.model.guards.get(c.callee)
                if g is not None and g.arg >= 0:
                    for i, name in c.param_args:
                        if i == g.arg and name in bools:
                            tied.add(name)
            elif n.kind == "assert":
                cond = classify_cond(n.text, self.model, frozenset(bools))
                if cond.kind == "param_eq_bql":
                    tied.add(cond.param)
        return tuple(p for p in bools if p in tied)

    def _valuation_params(self, info: FunctionInfo) -> tuple[str, ...]:
        bools = frozenset(p.name for p in info.fact.params if p.type in ("bool", "_Bool"))
        if not bools:
            return ()
        used = set(info.state_params)
        for n in iter_nodes(info.fact.body):
            if n.kind == "if":
                cond = classify_cond(n.text, self.model, bools)
                if cond.kind == "param":
                    used.add(cond.param)
        return tuple(p.name for p in info.fact.params if p.name in used)

    def resolve_name(self, name: str, from_file: str, key_hint: str = "") -> str:
        """A function name as seen from a file: its static definition there (or in
        the header it came from), else the global one."""
        memo = (name, from_file, key_hint)
        got = self._resolved.get(memo)
        if got is None:
            got = self._resolved[memo] = self._resolve(name, from_file, key_hint)
        return got

    def _resolve(self, name: str, from_file: str, key_hint: str) -> str:
        if key_hint and key_hint in self.functions:
            return key_hint
        local = f"{from_file}:{name}"
        if local in self.functions:
            return local
        if name in self.functions:
            return name
        keys = self.by_name.get(name, [])
        return keys[0] if len(keys) == 1 else ""

    def callees(self, site: Site) -> tuple[list[str], str]:
        """Resolved callee keys of a call site, and why it is unresolved ("" if not)."""
        memo = (site.tu, site.index)
        got = self._callees.get(memo)
        if got is None:
            got = self._callees[memo] = self._callees_of(site)
        return got

    def _callees_of(self, site: Site) -> tuple[list[str], str]:
        c = site.call
        if c.via == "direct":
            key = self.resolve_name(c.callee, site.call.caller_file, c.callee_key)
            return ([key], "") if key else ([], "not analysed")
        if c.via == "field":
            keys = sorted(self.slots.get(c.callee, ()))
            return (keys, "") if keys else ([], f"no function stored in {c.callee}")
        return [], f"indirect call through {c.callee}"

    def _registrations(self) -> None:
        apis = {name: (e.context, e.fn, e.name) for name, e in self.model.entries.items()}
        # Wrappers: a function that passes its own parameter to a registration API
        # becomes a registration API itself (postcopy_thread_create and kin).
        changed = True
        while changed:
            changed = False
            for info in self.functions.values():
                if info.name in apis:
                    continue
                params = [p.name for p in info.fact.params]
                for site in info.sites.values():
                    api = apis.get(site.call.callee)
                    if api is None:
                        continue
                    ctx, fn_idx, name_idx = api
                    prm = dict(site.call.param_args)
                    fwd = tuple(params.index(prm[i]) for i in fn_idx if prm.get(i) in params)
                    if not fwd:
                        continue
                    nm = params.index(prm[name_idx]) if prm.get(name_idx) in params else -1
                    apis[info.name] = (ctx, fwd, nm)
                    changed = True
                    break
        self.wrappers = {k: v for k, v in apis.items() if k not in self.model.entries}
        for info in self.functions.values():
            for site in info.sites.values():
                api = apis.get(site.call.callee)
                if api is None:
                    continue
                ctx, fn_idx, name_idx = api
                fns = dict(site.call.fn_args)
                name = ""
                if name_idx >= 0 and name_idx < len(site.call.values):
                    name = (site.call.values[name_idx] or "").strip('"')
                    if not name and name_idx < len(site.call.args):
                        name = site.call.args[name_idx]
                for i in fn_idx:
                    if i in fns:
                        key = self.resolve_name(fns[i], site.call.caller_file)
                        if key:
                            self.registrations.append(
                                Registration(ctx, key, name, site, site.call.callee)
                            )

    # -- queries -----------------------------------------------------------------

    def find(self, name: str) -> list[FunctionInfo]:
        if name in self.functions:
            return [self.functions[name]]
        return [self.functions[k] for k in self.by_name.get(name, [])]

    def annotations_for(self, info: FunctionInfo) -> set[str]:
        return effective(set(info.annotations) | self.annotations.get(info.name, set()))

    def annotations_of(self, call: Call, key: str) -> set[str]:
        anns = set(call.callee_annotations)
        info = self.functions.get(key)
        if info:
            anns |= set(info.annotations)
        anns |= self.annotations.get(call.callee, set())
        return effective(anns)

    def trace_events_for(self, file: str) -> frozenset[str] | None:
        return self.trace_events.get(os.path.dirname(file))


def effective(anns: set[str]) -> set[str]:
    """A function declared coroutine_mixed_fn anywhere (usually its public
    header) may be called from anywhere, even if its definition says
    coroutine_fn (qemu_get_counted_string() in QEMU 10.x does)."""
    if "coroutine_mixed_fn" in anns:
        return anns - {"coroutine_fn"}
    return anns


def _rank(tu: TUFacts, f: Function) -> tuple[int, int]:
    """Which of several definitions of one global function to analyse: the one
    the build compiles (stubs are built only when a feature is off), then the
    one outside a *stub* file."""
    return (0 if tu.mode == "build" else 1, 1 if "stub" in f.file else 0)
