"""Where each function can run: propagate (context, BQL state) from the entry
points over the call graph, keeping a shortest witness chain for each.

Entry points come from the API model: main-loop functions (main, qmp_*, hmp_*)
and callbacks registered as bottom halves, fd handlers, watches and timers run
in the main loop with the BQL; a qemu_thread_create() entry runs in its named
thread without it; a coroutine runs in the context of the function that
creates it, with that function's BQL state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from reviewer.analysis.bql import BOTH, HELD, NOT_HELD, BqlAnalysis, Valuation, mask_text
from reviewer.analysis.program import Bindings, Program, Site


@dataclass(frozen=True, eq=False)
class State:
    fn: str
    ctx: str
    bql: int  # HELD or NOT_HELD
    val: Valuation = ()
    # Parameters bound to global objects (`vmstate_load_state(f,
    # &vmstate_configuration, ...)`): which object's hooks a field call reaches.
    obj: Bindings = ()
    # States key every table of the propagation: their hash is computed once
    # (a dataclass's would hash the nested tuples at each lookup).
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.fn, self.ctx, self.bql, self.val, self.obj)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, State):
            return NotImplemented
        return (self._hash == other._hash and self.fn == other.fn and self.ctx == other.ctx
                and self.bql == other.bql and self.val == other.val and self.obj == other.obj)

    def __reduce__(self) -> tuple[type[State], tuple[str, str, int, Valuation, Bindings]]:
        # Not the hash: it would be wrong in a process with another hash seed.
        return (State, (self.fn, self.ctx, self.bql, self.val, self.obj))


@dataclass(frozen=True)
class Step:
    """How a state was reached: from `parent` through `site` (None for roots)."""

    parent: State | None
    site: Site | None
    how: str  # "call", "field", "root:<kind>", "coroutine"


@dataclass(frozen=True)
class Reach:
    ctx: str
    bql: int  # mask over all valuations reaching it in this context
    chain: tuple[str, ...]  # function names from the entry point
    vias: tuple[str, ...]  # per step: how it was entered
    valuations: tuple[Valuation, ...]

    @property
    def bql_text(self) -> str:
        return mask_text(self.bql)


def _bits(mask: int) -> tuple[int, ...]:
    return tuple(b for b in (HELD, NOT_HELD) if mask & b)


class Contexts:
    def __init__(self, program: Program, bql: BqlAnalysis | None = None,
                 roots: list[tuple[State, Step]] | None = None) -> None:
        """Propagate from the model's entry points, or from `roots` (an audit
        of one thread or one function)."""
        self.p = program
        self.bql = bql or BqlAnalysis(program)
        self.steps: dict[State, Step] = {}
        # Length of each state's witness chain, kept as states are reached:
        # choosing the shortest chain among a function's states no longer
        # walks every chain (117,000 walks per scan of the threadify series).
        self._length: dict[State, int] = {}
        self._chains: dict[State, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.by_fn: dict[str, list[State]] = {}
        self.unresolved: dict[tuple[str, int], str] = {}  # (fn, call idx) -> why
        self._given_roots = roots
        self._run()

    def _roots(self) -> list[tuple[State, Step]]:
        m = self.p.model
        out: list[tuple[State, Step]] = []
        main = m.contexts.get("main")
        if main is not None:
            for key, info in self.p.functions.items():
                if info.name in main.functions or info.name.startswith(main.prefixes):
                    out.append((State(key, "main loop", HELD), Step(None, None, "root:main")))
        for reg in self.p.registrations:
            kind = m.contexts.get(reg.context)
            if kind is None or kind.bql == "inherited":
                continue
            name = reg.thread_name
            if reg.context == "thread" and not name.replace("/", "").replace("-", "").replace(
                "_", "").isalnum():
                name = f"[{name}]"  # named at run time by this expression
            ctx = f"thread {name}" if reg.context == "thread" else {
                "bh": "main loop (bottom half)", "fd_handler": "main loop (fd handler)",
                "watch": "main loop (channel watch)", "timer": "main loop (timer)",
            }.get(reg.context, reg.context)
            bql = HELD if kind.bql == "held" else NOT_HELD
            out.append((State(reg.target, ctx, bql), Step(None, reg.site, f"root:{reg.context}")))
        return out

    def _run(self) -> None:
        queue: deque[State] = deque()
        for st, step in (self._roots() if self._given_roots is None else self._given_roots):
            if st.fn in self.p.functions and st not in self.steps:
                self.steps[st] = step
                self._length[st] = 1
                queue.append(st)
        coroutine_regs: dict[tuple[str, int], list[str]] = {}
        for reg in self.p.registrations:
            if reg.context == "coroutine":
                coroutine_regs.setdefault((reg.site.fn, reg.site.index), []).append(reg.target)
        # What a state leads to depends on its function, BQL state, valuation
        # and bindings, not on its context: a function reached from several
        # threads and main-loop callbacks resolves its calls once.
        moves: dict[tuple[str, int, Valuation, Bindings], list[tuple[
            str, int, Valuation, Bindings, Site, str]]] = {}
        while queue:
            st = queue.popleft()
            self.by_fn.setdefault(st.fn, []).append(st)
            k = (st.fn, st.bql, st.val, st.obj)
            out = moves.get(k)
            if out is None:
                out = moves[k] = self._moves(st, coroutine_regs)
            for target, b, val, obj, site, how in out:
                if how == "coroutine":
                    ctx = st.ctx if st.ctx.startswith("coroutine") else f"coroutine in {st.ctx}"
                    self._push(queue, State(target, ctx, b), Step(st, site, how))
                else:
                    self._push(queue, State(target, st.ctx, b, val, obj), Step(st, site, how))

    def _moves(self, st: State, coroutine_regs: dict[tuple[str, int], list[str]]
               ) -> list[tuple[str, int, Valuation, Bindings, Site, str]]:
        """The states `st` leads to, in order, less their context:
        (function, BQL state, valuation, bindings, site, how)."""
        out: list[tuple[str, int, Valuation, Bindings, Site, str]] = []
        info = self.p.functions[st.fn]
        flow = self.bql.flow(st.fn, st.bql, st.val)
        caller_val = dict(st.val)
        for idx, site in info.sites.items():
            mask = flow.at_call.get(idx, 0)
            if not mask:
                continue
            for target in coroutine_regs.get((st.fn, idx), ()):
                for b in _bits(mask):
                    out.append((target, b, (), (), site, "coroutine"))
            keys, why = self.p.callees(site)
            narrowed = self.p.object_callees(site.call, st.obj)
            if narrowed is not None:
                keys, why = narrowed, ""
            if why and site.call.via != "direct":
                self.unresolved[(st.fn, idx)] = why
            for key in keys:
                callee = self.p.functions[key]
                val = self.bql.callee_valuation(site.call, callee, caller_val)
                obj = self.p.callee_bindings(site.call, info, callee, st.obj)
                how = "field" if site.call.via == "field" else "call"
                for b in _bits(mask):
                    out.append((key, b, val, obj, site, how))
        return out

    def _push(self, queue: deque[State], st: State, step: Step) -> None:
        if st not in self.steps:
            self.steps[st] = step
            self._length[st] = self._length[step.parent] + 1 if step.parent else 1
            queue.append(st)

    def length(self, st: State) -> int:
        """len(self.chain(st)[0]), without walking the chain."""
        return self._length[st]

    # -- queries -------------------------------------------------------------------

    def root_of(self, st: State) -> State:
        cur = st
        while True:
            step = self.steps[cur]
            if step.parent is None:
                return cur
            cur = step.parent

    def chain(self, st: State) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The witness chain of `st` from its root: (function names, how each
        was reached). Kept per state: a scan asks for every function's chains
        in every version, and chains share their beginnings."""
        got = self._chains.get(st)
        if got is not None:
            return got
        # Up to the nearest state whose chain is known (or the root), then
        # down again extending it, without recursion.
        path: list[State] = []
        cur: State | None = st
        while cur is not None and cur not in self._chains:
            path.append(cur)
            cur = self.steps[cur].parent
        names, vias = self._chains[cur] if cur is not None else ((), ())
        for s in reversed(path):
            step = self.steps[s]
            if step.how.startswith("root:"):
                via = step.how[5:]
            elif step.how == "field" and step.site is not None:
                via = f"via {step.site.call.callee}"
            else:
                via = step.how
            names, vias = (*names, self.p.functions[s.fn].name), (*vias, via)
            self._chains[s] = (names, vias)
        return names, vias

    def reaches(self, key: str) -> list[Reach]:
        """Contexts of a function, merged over valuations, shortest chain first."""
        groups: dict[str, list[State]] = {}
        for st in self.by_fn.get(key, []):
            groups.setdefault(st.ctx, []).append(st)
        out: list[Reach] = []
        for ctx, states in groups.items():
            mask = 0
            for s in states:
                mask |= s.bql
            best = min(states, key=self.length)
            names, vias = self.chain(best)
            out.append(Reach(ctx, mask, names, vias, tuple(sorted({s.val for s in states}))))
        out.sort(key=lambda r: (len(r.chain), r.ctx))
        return out

    def states(self, key: str) -> list[State]:
        return self.by_fn.get(key, [])

    def in_thread(self, key: str) -> list[State]:
        return [s for s in self.by_fn.get(key, []) if s.ctx.startswith("thread")]


def merge_mask(states: list[State]) -> int:
    mask = 0
    for s in states:
        mask |= s.bql
    return mask & BOTH
