"""BQL state inside a function: an abstract interpreter over the body IR.

The state at each point is the set of BQL states a path can have there: HELD,
NOT_HELD, or both (a mask). Branches on bql_locked() refine it, assertions are
facts, WITH_BQL_HELD/RELEASED and BQL_LOCK_GUARD scope it, and callees apply
their summaries (exit state as a function of entry state). The analysis is
parameter-sensitive: a function's bool parameters tied to the BQL state
(`bql_held`) get a valuation from each call site and prune branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reviewer.analysis.program import FunctionInfo, Program
from reviewer.extract.facts import Call, Node
from reviewer.model.classify import Cond, classify_cond, iter_nodes, split_conjuncts

HELD = 1
NOT_HELD = 2
BOTH = HELD | NOT_HELD
DEAD = 0

Valuation = tuple[tuple[str, bool], ...]  # sorted (param, value) for known params


def mask_text(mask: int) -> str:
    return {HELD: "held", NOT_HELD: "not held", BOTH: "maybe held", DEAD: "unreachable"}[mask]


@dataclass(frozen=True)
class Event:
    """Something the flow saw that a rule may report."""

    kind: str  # double_lock | unlock_not_held | requires_bql | requires_no_bql |
    #           param_mismatch | guard_mismatch | inconsistent_exit
    line: int
    mask: int
    call: int = -1  # TU call index, when the event is at a call
    detail: str = ""


@dataclass
class Flow:
    """Result of analysing one function for one entry state and valuation."""

    at_call: dict[int, int] = field(default_factory=dict)  # call index -> mask
    co_guarded: set[int] = field(default_factory=set)  # under qemu_in_coroutine()
    events: list[Event] = field(default_factory=list)
    returns: list[tuple[int, int]] = field(default_factory=list)  # (line, mask)
    exit: int = DEAD
    rcu_read: bool = False


# The state along the paths reaching a point: a set of (BQL bit, flag values).
# Flags are the function's local variables that mirror the lock state
# (`early_fail = false` after the lock is dropped, `if (early_fail) unlock`):
# keeping them per path removes the classic false positive of a
# path-insensitive lock analysis. With no such flags this is just a mask.
St = frozenset[tuple[int, tuple[bool | None, ...]]]
_NONE: St = frozenset()
MAX_FLAGS = 4


def bits(st: St) -> int:
    m = 0
    for b, _ in st:
        m |= b
    return m


@dataclass
class _Out:
    out: St = _NONE
    breaks: St = _NONE
    continues: St = _NONE
    co: bool = False  # inside qemu_in_coroutine() when the block falls through


class BqlAnalysis:
    """Memoised per-function flows and summaries."""

    def __init__(self, program: Program,
                 reused: dict[tuple[str, int, Valuation], Flow] | None = None) -> None:
        """reused: flows that still hold, from the analysis of another version
        (reviewer.analysis.incremental)."""
        self.p = program
        self.m = program.model
        self._flows: dict[tuple[str, int, Valuation], Flow] = dict(reused or {})
        self._busy: set[tuple[str, int, Valuation]] = set()
        self.flag_memo: dict[str, tuple[str, ...]] = {}

    # -- public ------------------------------------------------------------------

    @property
    def flows(self) -> dict[tuple[str, int, Valuation], Flow]:
        """Every flow computed (or reused) so far."""
        return self._flows

    def flow(self, key: str, entry: int, valuation: Valuation = ()) -> Flow:
        k = (key, entry, valuation)
        got = self._flows.get(k)
        if got is not None:
            return got
        if k in self._busy:  # recursion: assume the callee leaves the state alone
            return Flow(exit=entry)
        self._busy.add(k)
        try:
            flow = _Run(self, self.p.functions[key], entry, dict(valuation)).run()
        finally:
            self._busy.discard(k)
        self._flows[k] = flow
        return flow

    def exit_state(self, key: str, entry: int, valuation: Valuation = ()) -> int:
        out = DEAD
        for bit in (HELD, NOT_HELD):
            if entry & bit:
                out |= self.flow(key, bit, valuation).exit
        return out

    def requires(self, key: str, valuation: Valuation = ()) -> tuple[bool, bool]:
        """(needs the BQL, needs it released) on entry, from its own body."""
        need = any(e.kind == "requires_bql" for e in self.flow(key, NOT_HELD, valuation).events)
        need_not = any(
            e.kind == "requires_no_bql" for e in self.flow(key, HELD, valuation).events
        )
        return need, need_not

    def callee_valuation(self, site_call: Call, callee: FunctionInfo,
                         caller_val: dict[str, bool]) -> Valuation:
        """The callee's valuation at a call: its bool parameters given as
        constants or as the caller's valued parameters, and the conditions the
        model assumes on this caller -> callee edge ([[assume]])."""
        assumed = tuple((a.condition, a.value) for a in
                        self.m.assumptions.get((site_call.caller, callee.name), ()))
        if not callee.valuation_params:
            return tuple(sorted(assumed))
        names = [p.name for p in callee.fact.params]
        prm = dict(site_call.param_args)
        out: list[tuple[str, bool]] = []
        for sp in callee.valuation_params:
            i = names.index(sp)
            v = site_call.values[i] if i < len(site_call.values) else None
            if v in ("true", "1"):
                out.append((sp, True))
            elif v in ("false", "0"):
                out.append((sp, False))
            elif i in prm and prm[i] in caller_val:
                out.append((sp, caller_val[prm[i]]))
        return tuple(sorted({*out, *assumed}))


class _Run:
    def __init__(self, a: BqlAnalysis, info: FunctionInfo, entry: int,
                 valuation: dict[str, bool]) -> None:
        self.a = a
        self.m = a.m
        self.info = info
        self.calls = info.tu.calls
        self.val = valuation
        self.params = frozenset(p.name for p in info.fact.params)
        self.entry = entry
        self.flow = Flow()
        self.labels: dict[str, St] = {}
        self.pending: dict[str, St] = {}
        self.scopes: list[St] = []  # entry states of enclosing guard scopes
        self.co = False  # inside a qemu_in_coroutine() branch
        flags = a.flag_memo.get(info.key)
        if flags is None:
            flags = a.flag_memo[info.key] = self._flags()
        self.flags = flags
        self.none = tuple(None for _ in self.flags)
        # A valuation may name a condition the model assumes (`se->vmsd`), not
        # only a parameter.
        self.cond_names = self.params | frozenset(flags) | frozenset(valuation)

    def _flags(self) -> tuple[str, ...]:
        """Local variables set to constants and tested as conditions."""
        sets: list[str] = []
        tested: set[str] = set()
        for n in iter_nodes(self.info.fact.body):
            if n.kind == "set" and n.name not in sets and n.name not in self.params:
                sets.append(n.name)
            elif n.kind == "if":
                c = classify_cond(n.text, self.m, frozenset(sets) | self.params)
                if c.kind == "param":
                    tested.add(c.param)
        return tuple(v for v in sets if v in tested)[:MAX_FLAGS]

    def run(self) -> Flow:
        body = self.info.fact.body
        start: St = frozenset({(self.entry, self.none)})
        out = _Out()
        for _ in range(4):  # backward gotos: re-run with label seeds until stable
            self.flow = Flow()
            seeds = dict(self.pending)
            self.pending = {}
            self.labels = seeds
            out = self.block(body, start)
            grown = {k: seeds.get(k, _NONE) | v for k, v in self.pending.items()}
            if all(grown.get(k, _NONE) == seeds.get(k, _NONE) for k in set(grown) | set(seeds)):
                break
            self.pending = grown
        self.flow.exit = bits(out.out)
        for _, m in self.flow.returns:
            self.flow.exit |= m
        self._check_exits()
        return self.flow

    def _check_exits(self) -> None:
        """For one definite entry state, every path should leave with the same
        BQL state; a mix means some path forgot to unlock (or to lock again)."""
        if self.flow.exit != BOTH or self.entry == BOTH:
            return
        odd = [ln for ln, m in self.flow.returns if m & ~self.entry & BOTH]
        same = [ln for ln, m in self.flow.returns if m == self.entry]
        lines = odd or same or [self.info.fact.end_line]
        self.flow.events.append(
            Event("inconsistent_exit", lines[0], self.flow.exit,
                  detail=",".join(str(x) for x in lines))
        )

    # -- state operations ---------------------------------------------------------

    @staticmethod
    def with_bit(st: St, bit: int) -> St:
        return frozenset((bit, v) for _, v in st)

    @staticmethod
    def only(st: St, want: int) -> St:
        return frozenset((b, v) for b, v in st if b & want)

    def set_flag(self, st: St, name: str, value: str) -> St:
        i = self.flags.index(name)
        truth = value not in ("false", "0", "NULL")
        return frozenset((b, (*v[:i], truth, *v[i + 1:])) for b, v in st)

    def split_flag(self, st: St, name: str, truth: bool) -> St:
        i = self.flags.index(name)
        return frozenset(
            (b, (*v[:i], truth, *v[i + 1:])) for b, v in st if v[i] is None or v[i] == truth
        )

    # -- statements ---------------------------------------------------------------

    def block(self, nodes: tuple[Node, ...], st: St) -> _Out:
        res = _Out()
        co_saved = self.co
        for n in nodes:
            if n.kind == "label":
                st = st | self.pending.pop(n.name, _NONE) | self.labels.get(n.name, _NONE)
                continue
            if n.kind == "case":
                continue  # handled by switch
            if not st:
                continue
            st = self.node(n, st, res)
        res.co = self.co
        self.co = co_saved
        res.out = st
        return res

    def node(self, n: Node, st: St, res: _Out) -> St:
        k = n.kind
        if k == "call":
            return self.call(n.call, n.line, st)
        if k == "if":
            return self.if_(n, st, res)
        if k == "loop":
            return self.loop(n, st, res)
        if k == "switch":
            return self.switch(n, st, res)
        if k == "scope":
            return self.scope(n, st, res)
        if k == "assert":
            return self.assertion(n, st)
        if k == "set":
            return self.set_flag(st, n.name, n.text) if n.name in self.flags else st
        if k == "return":
            ret = self.scopes[0] if self.scopes else st
            self.flow.returns.append((n.line, bits(ret)))
            return _NONE
        if k == "break":
            res.breaks |= st
            return _NONE
        if k == "continue":
            res.continues |= st
            return _NONE
        if k == "goto":
            self.pending[n.name] = self.pending.get(n.name, _NONE) | st
            return _NONE
        return st

    def cond(self, text: str) -> Cond:
        return classify_cond(text, self.m, self.cond_names)

    def _refine(self, c: Cond, st: St, holds: bool) -> St:
        """The paths of st on which condition c evaluates to `holds`."""
        truth = holds != c.negated
        if c.kind == "bql_locked":
            return self.only(st, HELD if truth else NOT_HELD)
        if c.kind == "param" and c.param in self.flags:
            return self.split_flag(st, c.param, truth)
        if c.kind == "param" and c.param in self.val:
            return st if self.val[c.param] == truth else _NONE
        return st

    def if_(self, n: Node, st: St, res: _Out) -> St:
        then_s, else_s = st, st
        then_co, else_co = self.co, self.co
        conj = split_conjuncts(n.text)
        disj = split_conjuncts(n.text, "||") if len(conj) == 1 else []
        if len(disj) <= 1:
            disj = []
        if len(conj) == 1 and not disj:
            c = self.cond(conj[0])
            then_s, else_s = self._refine(c, st, True), self._refine(c, st, False)
            if c.kind == "in_coroutine":
                then_co = then_co or not c.negated
                else_co = else_co or c.negated
        else:
            # All conjuncts hold in the then-branch; all disjuncts fail in the else.
            for piece in conj if len(conj) > 1 else []:
                c = self.cond(piece)
                then_s = self._refine(c, then_s, True)
                then_co = then_co or (c.kind == "in_coroutine" and not c.negated)
            for piece in disj:
                c = self.cond(piece)
                else_s = self._refine(c, else_s, False)
                else_co = else_co or (c.kind == "in_coroutine" and c.negated)
        out: St = _NONE
        cos: list[bool] = []
        for branch, s_, co in ((n.branches[0], then_s, then_co), (n.branches[1], else_s, else_co)):
            if not s_:
                continue
            saved = self.co
            self.co = co
            r = self.block(branch, s_)
            self.co = saved
            out |= r.out
            res.breaks |= r.breaks
            res.continues |= r.continues
            if r.out:
                cos.append(r.co)
        if cos:
            # Code after the if is inside a coroutine only if every branch that
            # falls through is (`if (!qemu_in_coroutine()) { break; }`).
            self.co = all(cos)
        return out

    def loop(self, n: Node, st: St, res: _Out) -> St:
        cur = st
        r = _Out()
        for _ in range(8):
            r = self.block(n.branches[0], cur)
            nxt = st | r.out | r.continues
            if nxt == cur:
                break
            cur = nxt
        if n.name == "do":
            return r.out | r.continues | r.breaks
        return cur | r.breaks

    def switch(self, n: Node, st: St, res: _Out) -> St:
        body = n.branches[0]
        has_default = any(x.kind == "case" and x.name == "default" for x in body)
        cur: St = _NONE
        inner = _Out()
        for x in body:
            if x.kind == "case":
                cur |= st
                continue
            if x.kind == "label":
                cur |= self.pending.pop(x.name, _NONE) | self.labels.get(x.name, _NONE)
                continue
            if not cur:
                continue
            cur = self.node(x, cur, inner)
        res.continues |= inner.continues
        return cur | inner.breaks | (_NONE if has_default else st)

    def scope(self, n: Node, st: St, res: _Out) -> St:
        c = self.calls[n.call] if n.call >= 0 else None
        g = self.m.guards.get(c.callee) if c is not None else None
        if c is not None:
            self.record_call(n.call, bits(st))
        body = n.branches[0]
        if g is None or g.kind in ("lock_guard",):
            r = self.block(body, st)
            res.breaks |= r.breaks
            res.continues |= r.continues
            return r.out
        inside = st
        if g.kind == "bql_lock_guard":
            inside = self.with_bit(st, HELD)
        elif g.kind in ("with_bql_held", "with_bql_released"):
            inside = self.with_bit(st, HELD if g.kind == "with_bql_held" else NOT_HELD)
            self.check_state_arg(c, g.arg, bits(st), n.line, n.call)
        elif g.kind == "rcu_read_guard":
            self.flow.rcu_read = True
        self.scopes.append(st)
        r = self.block(body, inside)
        self.scopes.pop()
        if n.name != "for":
            res.breaks |= st if r.breaks else _NONE
            res.continues |= st if r.continues else _NONE
        # Leaving the scope restores the entry state, flags as the body left them.
        if not (r.out or r.breaks):
            return _NONE
        flags = {v for _, v in r.out | r.breaks}
        return frozenset((b, v) for b, _ in st for v in flags)

    def check_state_arg(self, c: Call | None, idx: int, mask: int, line: int, call: int) -> None:
        """A guard's BQL-state argument must match the state on entry (the guard
        asserts `bql_held == bql_locked()`)."""
        if c is None or idx < 0:
            return
        v = c.values[idx] if idx < len(c.values) else None
        known: bool | None = None
        if v in ("true", "1"):
            known = True
        elif v in ("false", "0"):
            known = False
        else:
            prm = dict(c.param_args)
            if idx in prm and prm[idx] in self.val:
                known = self.val[prm[idx]]
        if known is None:
            return
        wrong = mask & (NOT_HELD if known else HELD)
        if wrong:
            self.flow.events.append(Event("guard_mismatch", line, mask, call,
                                          "true" if known else "false"))

    def assertion(self, n: Node, st: St) -> St:
        for piece in split_conjuncts(n.text):
            c = self.cond(piece)
            mask = bits(st)
            if c.kind == "bql_locked":
                want = NOT_HELD if c.negated else HELD
                if mask & ~want & BOTH:
                    kind = "requires_no_bql" if c.negated else "requires_bql"
                    self.flow.events.append(Event(kind, n.line, mask, detail=f"assert({piece})"))
                st = self.only(st, want)
            elif c.kind == "param_eq_bql" and c.param in self.val:
                want = HELD if self.val[c.param] != c.negated else NOT_HELD
                if mask & ~want & BOTH:
                    self.flow.events.append(Event(
                        "param_mismatch", n.line, mask,
                        detail=f"{c.param}={str(self.val[c.param]).lower()}"))
                st = self.only(st, want)
            elif c.kind == "param" and c.param in self.flags:
                st = self.split_flag(st, c.param, not c.negated)
            elif c.kind == "in_coroutine" and not c.negated:
                self.co = True
        return st

    # -- calls --------------------------------------------------------------------

    def record_call(self, idx: int, mask: int) -> None:
        self.flow.at_call[idx] = self.flow.at_call.get(idx, DEAD) | mask
        if self.co:
            self.flow.co_guarded.add(idx)

    def call(self, idx: int, line: int, st: St) -> St:
        c = self.calls[idx]
        mask = bits(st)
        self.record_call(idx, mask)
        name = c.callee
        m = self.m
        op = m.bql_op(name)
        if op == "lock":
            if mask & HELD:
                self.flow.events.append(Event("double_lock", line, mask, idx))
            return self.with_bit(st, HELD)
        if op == "unlock":
            if mask & NOT_HELD:
                self.flow.events.append(Event("unlock_not_held", line, mask, idx))
            return self.with_bit(st, NOT_HELD)
        if op == "cond_wait":
            if mask & NOT_HELD:
                self.flow.events.append(Event("requires_bql", line, mask, idx, name))
            return st
        if name in m.noreturn or c.noreturn:
            return _NONE
        if name in m.rcu_read_lock:
            self.flow.rcu_read = True
        if name in m.requires_bql or name.startswith(m.requires_bql_prefixes):
            if mask & NOT_HELD:
                self.flow.events.append(Event("requires_bql", line, mask, idx, name))
            return st
        if c.via != "direct":
            return st
        key = self.a.p.resolve_name(name, c.caller_file, c.callee_key)
        if not key or key == self.info.key:
            return st
        callee = self.a.p.functions[key]
        val = self.a.callee_valuation(c, callee, self.val)
        need, need_not = self.a.requires(key, val)
        if name in m.startup_only:
            need = False
        if need and mask & NOT_HELD:
            self.flow.events.append(Event("requires_bql", line, mask, idx, name))
        if need_not and mask & HELD:
            self.flow.events.append(Event("requires_no_bql", line, mask, idx, name))
        out: St = _NONE
        for b in (HELD, NOT_HELD):
            part = self.only(st, b)
            if not part:
                continue
            ex = self.a.exit_state(key, b, val)
            if not ex:
                out |= part  # noreturn or unknown: keep the path as it was
            for nb in (HELD, NOT_HELD):
                if ex & nb:
                    out |= self.with_bit(part, nb)
        return out
