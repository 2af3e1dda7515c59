"""The whole program as the analysis sees it: functions, resolved call edges,
struct-field slots, entry registrations (with wrappers derived), and the
parameters that carry the BQL state.

Built once from the facts and the API model; everything after it (BQL flow,
contexts, rules) reads it and never the raw TUs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from reviewer.extract.facts import Call, FactSet, Function, TUFacts
from reviewer.model import ApiModel
from reviewer.model.classify import classify_cond, iter_nodes

# Parameters bound to global objects: (parameter, the objects it may point to).
# `vmstate_load_state(f, &vmstate_x, ...)` binds vmsd to (vmstate_x,); its
# recursive call for `field->vmsd` binds it to the descriptions vmstate_x's
# fields name, and so on down.
Bindings = tuple[tuple[str, tuple[str, ...]], ...]

_LAST_MEMBER = re.compile(r"(?:->|\.)\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")


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
        # Global objects (file-scope structs and arrays with an initialiser):
        # the functions each one's initialiser stores, by slot, and the other
        # objects it names (`.vmsd = &x`, subsection lists, `.info = &y`).
        self.obj_slots: dict[str, dict[str, set[str]]] = {}
        self.obj_refs: dict[str, list[tuple[str, str]]] = {}  # owner -> (field, target)
        self.obj_arrays: set[str] = set()  # objects that are bare lists of others
        self.obj_parts: set[str] = set()  # member arrays named apart (see _index)
        self.ref_fields: set[str] = set()  # fields objects are named through (vmsd, info)
        self.obj_structs: set[str] = set()  # structs whose hooks live in objects
        self._closure: dict[str, frozenset[str]] = {}
        self._dispatched: dict[str, frozenset[str]] = {}
        # Per function: indexes of the parameters whose object's hooks it calls,
        # itself (`vmsd->post_load(...)`) or through a callee.
        self.carrying: dict[str, frozenset[int]] = {}
        self.trace_events = trace_events or {}
        self.degraded_tus = [tu for tu in facts.tus if tu.degraded]
        self._index(facts)
        self.registrations: list[Registration] = []
        self._registrations()

    # -- building ----------------------------------------------------------------

    def _index(self, facts: FactSet) -> None:
        ref_struct: dict[str, set[str]] = {}  # object -> structs of the refs naming it
        own_struct: dict[str, set[str]] = {}  # object -> structs of its own refs
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
                    if st.owner:
                        self.obj_slots.setdefault(st.owner, {}).setdefault(
                            st.slot, set()).add(key)
                        self.obj_structs.add(st.struct)
            for ref in tu.object_refs:
                self.obj_refs.setdefault(ref.owner, []).append((ref.field, ref.target))
                ref_struct.setdefault(ref.target, set()).add(ref.struct)
                if ref.field:
                    self.ref_fields.add(ref.field)
                own_struct.setdefault(ref.owner, set()).add(ref.struct)
                if not ref.struct:
                    self.obj_arrays.add(ref.owner)
        # Objects named through a field of one struct whose own references are
        # members of another (a VMStateField array named by a description).
        self.obj_parts = {o for o, structs in own_struct.items()
                          if o in ref_struct and "" not in structs
                          and not structs & ref_struct[o]}
        self._carrying()
        self._confine(facts)
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
            keys = sorted(self.open_slots.get(c.callee, ()))
            if keys:
                return keys, ""
            if c.callee in self.slots:
                return [], ""  # only objects that are loaded by name store one
            return [], f"no function stored in {c.callee}"
        return [], f"indirect call through {c.callee}"

    def _confine(self, facts: FactSet) -> None:
        """Objects only ever handed to the functions that run their hooks
        (`vmstate_load_state(f, &vmstate_configuration, ...)`), or named only
        inside such objects, are confined: a field call through a pointer the
        analysis cannot bind (`se->vmsd`) does not reach their hooks. Any other
        use of an object's address (registration, an assignment, a return)
        leaves it open to every such call."""
        addressed: dict[str, int] = {}
        for tu in facts.tus:
            for k, n in tu.addressed:
                addressed[k] = addressed.get(k, 0) + n
        handed: dict[str, int] = {}
        for info in self.functions.values():
            for site in info.sites.values():
                c = site.call
                if not c.obj_args or c.via != "direct":
                    continue
                callee = self.resolve_name(c.callee, c.caller_file, c.callee_key)
                carrying = self.carrying.get(callee, frozenset()) if callee else frozenset()
                for i, k in c.obj_args:
                    if i in carrying:
                        handed[k] = handed.get(k, 0) + 1
        owners: dict[str, set[str]] = {}
        for owner, refs in self.obj_refs.items():
            for _, t in refs:
                owners.setdefault(t, set()).add(owner)
        # Static objects only: a global one can be named by a TU not analysed.
        confined = {k for k, n in addressed.items()
                    if n and ":" in k and handed.get(k, 0) == n}
        changed = True
        while changed:
            changed = False
            for t, os_ in owners.items():
                if (t not in confined and ":" in t and not addressed.get(t)
                        and os_ <= confined):
                    confined.add(t)
                    changed = True
        self.confined = frozenset(confined)
        self.open_slots: dict[str, set[str]] = {}
        for tu in facts.tus:
            for st in tu.field_stores:
                if st.owner and st.owner in self.confined:
                    continue
                key = self.resolve_name(st.function, st.file, st.function_key)
                if key:
                    self.open_slots.setdefault(st.slot, set()).add(key)

    def _carrying(self) -> None:
        """Parameters that carry an object whose hooks the function calls: the
        base of a field call (`vmsd->post_load`), passed on to a carrying
        parameter, or of the type of a carrying parameter that is given an
        object found inside it (`vmstate_load_state(f, sub_vmsd, ...)` in
        vmstate_subsection_load(vmsd))."""
        out: dict[str, set[int]] = {}
        for info in self.functions.values():
            names = [p.name for p in info.fact.params]
            for site in info.sites.values():
                c = site.call
                if c.via == "field" and c.base in names:
                    out.setdefault(info.key, set()).add(names.index(c.base))
        # A worklist over the direct call edges, by callee: a caller is looked
        # at again only when a callee's set grows (one pass over every call
        # site per round cost ~1 s on the whole tree).
        callers: dict[str, list[tuple[FunctionInfo, Call]]] = {}
        for info in self.functions.values():
            for site in info.sites.values():
                c = site.call
                if c.via == "direct":
                    callee = self.resolve_name(c.callee, c.caller_file, c.callee_key)
                    if callee:
                        callers.setdefault(callee, []).append((info, c))
        work = [k for k, v in out.items() if v]
        while work:
            callee = work.pop()
            theirs = out.get(callee)
            if not theirs:
                continue
            cparams = self.functions[callee].fact.params
            for info, c in callers.get(callee, ()):
                params = info.fact.params
                names = [p.name for p in params]
                have = out.setdefault(info.key, set())
                grew = False
                prm = dict(c.param_args)
                objs = dict(c.obj_args)
                for i in sorted(theirs):
                    if i in prm and prm[i] in names:
                        j = names.index(prm[i])
                    elif i in objs or i >= len(c.values) or c.values[i] is not None:
                        continue
                    else:
                        j = next((k for k, p in enumerate(params)
                                  if _norm(p.type) == _norm(cparams[i].type)), -1)
                    if j >= 0 and j not in have:
                        have.add(j)
                        grew = True
                if grew:
                    work.append(info.key)
        self.carrying = {k: frozenset(v) for k, v in out.items() if v}

    # -- objects -----------------------------------------------------------------

    def known_object(self, key: str) -> bool:
        return key in self.obj_slots or key in self.obj_refs

    def children(self, obj: str, field: str = "") -> set[str]:
        """The objects an object's initialiser names (only those in `field`
        when given); a named list of objects (`static const
        VMStateDescription *subs[] = {...}`) stands for its members."""
        all_refs = self.obj_refs.get(obj, [])
        refs = [(f, t) for f, t in all_refs if f == field] if field else all_refs
        out: set[str] = set()
        for _, t in refs:
            if t in self.obj_arrays:
                out |= self.children(t)
            else:
                out.add(t)
        if field:
            # A member list named apart (`.fields = foo_fields`, a VMStateField
            # array): its members' objects are this object's.
            for _, t in all_refs:
                if t in self.obj_parts:
                    out |= self.children(t, field)
        return out

    def closure(self, key: str) -> frozenset[str]:
        """An object and every object it names, transitively."""
        got = self._closure.get(key)
        if got is None:
            seen = {key}
            todo = [key]
            while todo:
                for _, child in self.obj_refs.get(todo.pop(), ()):
                    if child not in seen:
                        seen.add(child)
                        todo.append(child)
            got = self._closure[key] = frozenset(seen)
        return got

    def object_callees(self, call: Call, bindings: Bindings) -> list[str] | None:
        """The functions a field call can reach when the caller's parameters are
        bound to objects; None when the bindings say nothing about it."""
        if call.via != "field" or not bindings:
            return None
        scope: set[str] = set()
        for param, objs in bindings:
            if call.base == param:
                scope = set(objs)
                break
        else:
            # A hook read from something the bound objects name (`field->info`
            # while walking vmsd->fields): the objects in that field of theirs.
            if call.callee.split(".")[0] not in self.obj_structs:
                return None
            m = _LAST_MEMBER.search(call.base)
            field = m.group(1) if m else ""
            related = False
            for _, objs in bindings:
                for o in objs:
                    kids = self.children(o, field)
                    # A type written in place (`.info = &(const VMStateInfo)
                    # {...}`) is no object of its own: its hooks are stored in
                    # o, or in o's member list named apart.
                    parts = {t for _, t in self.obj_refs.get(o, []) if t in self.obj_parts}
                    scope |= parts
                    inline = any(call.callee in self.obj_slots.get(x, {}) for x in (o, *parts))
                    related |= bool(kids) or inline
                    scope |= kids
                    scope.add(o)
            if not related and field not in self.ref_fields:
                # Nothing ties this call to the bound objects: neither what they
                # name nor a field objects are named through (`info`).
                return None

        out: set[str] = set()
        for o in scope:
            out |= self.obj_slots.get(o, {}).get(call.callee, set())
        return sorted(out)

    def dispatched(self, key: str) -> frozenset[str]:
        """The slots a function with carrying parameters calls on its objects,
        itself or through callees that are handed them: for
        vmstate_load_state, the load hooks of a description and its fields'
        VMStateInfo.get, never the save hooks stored beside them."""
        got = self._dispatched.get(key)
        if got is not None:
            return got
        self._dispatched[key] = frozenset()  # recursion
        info = self.functions[key]
        names = [p.name for p in info.fact.params]
        carrying = {names[i] for i in self.carrying.get(key, ())}
        out: set[str] = set()
        for site in info.sites.values():
            c = site.call
            if c.via == "field" and (c.base in carrying or (
                    carrying and c.callee.split(".")[0] in self.obj_structs)):
                out.add(c.callee)
            elif c.via == "direct" and carrying:
                callee = self.resolve_name(c.callee, c.caller_file, c.callee_key)
                if callee and callee != key and self.carrying.get(callee):
                    out |= self.dispatched(callee)
        got = self._dispatched[key] = frozenset(out)
        return got

    def callee_bindings(self, call: Call, caller: FunctionInfo, callee: FunctionInfo,
                        bindings: Bindings) -> Bindings:
        """Which objects the callee's carrying parameters are bound to at a call:
        `&vmstate_foo`, the caller's own bound parameter passed on, or, for an
        argument of the same type as a bound parameter, the objects it names
        (in the field the argument reads, `field->vmsd`, when it says)."""
        carrying = self.carrying.get(callee.key)
        if not carrying:
            return ()
        objs = dict(call.obj_args)
        prm = dict(call.param_args)
        mine = dict(bindings)
        types = {p.name: _norm(p.type) for p in caller.fact.params}
        out: list[tuple[str, tuple[str, ...]]] = []
        for i in sorted(carrying):
            name = callee.fact.params[i].name
            if i in objs:
                if self.known_object(objs[i]):
                    out.append((name, (objs[i],)))
            elif i in prm:
                if prm[i] in mine:
                    out.append((name, mine[prm[i]]))
            elif mine and (i >= len(call.values) or call.values[i] is None):
                want = _norm(callee.fact.params[i].type)
                text = call.args[i] if i < len(call.args) else ""
                m = _LAST_MEMBER.search(text)
                for p, bound in mine.items():
                    if types.get(p) == want:
                        inner: set[str] = set()
                        for o in bound:
                            inner |= self.children(o, m.group(1) if m else "")
                        out.append((name, tuple(sorted(inner))))
                        break
        return tuple(out)

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


def _norm(ctype: str) -> str:
    """A parameter type without qualifiers or spacing: `const VMStateDescription *`
    and `VMStateDescription*` are the same object type here."""
    return "".join(t for t in ctype.replace("*", " * ").split() if t not in ("const", "volatile"))


def _rank(tu: TUFacts, f: Function) -> tuple[int, int]:
    """Which of several definitions of one global function to analyse: the one
    the build compiles (stubs are built only when a feature is off), then the
    one outside a *stub* file."""
    return (0 if tu.mode == "build" else 1, 1 if "stub" in f.file else 0)
