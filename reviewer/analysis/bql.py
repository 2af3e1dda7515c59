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
from reviewer.model.classify import Cond, classify_cond, split_conjuncts

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


@dataclass
class _Out:
    out: int = DEAD
    breaks: int = DEAD
    continues: int = DEAD
    co: bool = False  # inside qemu_in_coroutine() when the block falls through


class BqlAnalysis:
    """Memoised per-function flows and summaries."""

    def __init__(self, program: Program) -> None:
        self.p = program
        self.m = program.model
        self._flows: dict[tuple[str, int, Valuation], Flow] = {}
        self._busy: set[tuple[str, int, Valuation]] = set()

    # -- public ------------------------------------------------------------------

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
        if not callee.valuation_params:
            return ()
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
        return tuple(sorted(out))


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
        self.labels: dict[str, int] = {}
        self.pending: dict[str, int] = {}
        self.scopes: list[int] = []  # entry masks of enclosing guard scopes
        self.co = False  # inside a qemu_in_coroutine() branch

    def run(self) -> Flow:
        body = self.info.fact.body
        for _ in range(4):  # backward gotos: re-run with label seeds until stable
            self.flow = Flow()
            seeds = dict(self.pending)
            self.pending = {}
            self.labels = seeds
            out = self.block(body, self.entry)
            if not any((self.pending.get(k, 0) | v) != v for k, v in seeds.items()) and all(
                k in seeds for k in self.pending
            ):
                break
            self.pending = {k: seeds.get(k, 0) | v for k, v in self.pending.items()}
        self.flow.exit = out.out
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

    # -- statements ---------------------------------------------------------------

    def block(self, nodes: tuple[Node, ...], mask: int) -> _Out:
        res = _Out()
        co_saved = self.co
        for n in nodes:
            if n.kind == "label":
                mask |= self.pending.pop(n.name, DEAD) | self.labels.get(n.name, DEAD)
                continue
            if n.kind == "case":
                continue  # handled by switch
            if mask == DEAD:
                continue
            mask = self.node(n, mask, res)
        res.co = self.co
        self.co = co_saved
        res.out = mask
        return res

    def node(self, n: Node, mask: int, res: _Out) -> int:
        k = n.kind
        if k == "call":
            return self.call(n.call, n.line, mask)
        if k == "if":
            return self.if_(n, mask, res)
        if k == "loop":
            return self.loop(n, mask, res)
        if k == "switch":
            return self.switch(n, mask, res)
        if k == "scope":
            return self.scope(n, mask, res)
        if k == "assert":
            return self.assertion(n, mask)
        if k == "return":
            self.flow.returns.append((n.line, self.scopes[0] if self.scopes else mask))
            return DEAD
        if k == "break":
            res.breaks |= mask
            return DEAD
        if k == "continue":
            res.continues |= mask
            return DEAD
        if k == "goto":
            self.pending[n.name] = self.pending.get(n.name, DEAD) | mask
            return DEAD
        return mask

    def cond(self, text: str) -> Cond:
        return classify_cond(text, self.m, self.params)

    def if_(self, n: Node, mask: int, res: _Out) -> int:
        then_m, else_m = mask, mask
        then_co, else_co = self.co, self.co
        conj = split_conjuncts(n.text)
        disj = split_conjuncts(n.text, "||") if len(conj) == 1 else []
        if len(disj) <= 1:
            disj = []
        # All conjuncts hold in the then-branch; all disjuncts fail in the else-branch.
        for piece, in_then in [(p, True) for p in conj] + [(p, False) for p in disj]:
            c = self.cond(piece)
            truth = not c.negated if in_then else c.negated
            if len(conj) == 1 and not disj:
                truth_then, single = not c.negated, True
            else:
                truth_then, single = truth, False
            if c.kind == "bql_locked":
                want = HELD if truth_then else NOT_HELD
                if single:
                    then_m &= want
                    else_m &= BOTH & ~want
                elif in_then:
                    then_m &= want
                else:
                    else_m &= want
            elif c.kind == "in_coroutine":
                if single:
                    then_co = then_co or truth_then
                    else_co = else_co or not truth_then
                elif in_then and truth:
                    then_co = True
                elif not in_then and truth:
                    else_co = True
            elif c.kind == "param" and c.param in self.val and single:
                holds = self.val[c.param] != c.negated
                then_m, else_m = (then_m, DEAD) if holds else (DEAD, else_m)
        out = DEAD
        cos: list[bool] = []
        for branch, m, co in ((n.branches[0], then_m, then_co), (n.branches[1], else_m, else_co)):
            if m == DEAD:
                continue
            saved = self.co
            self.co = co
            r = self.block(branch, m)
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

    def loop(self, n: Node, mask: int, res: _Out) -> int:
        cur = mask
        r = _Out()
        for _ in range(6):
            r = self.block(n.branches[0], cur)
            nxt = mask | r.out | r.continues
            if nxt == cur:
                break
            cur = nxt
        if n.name == "do":
            return r.out | r.continues | r.breaks
        return cur | r.breaks

    def switch(self, n: Node, mask: int, res: _Out) -> int:
        body = n.branches[0]
        has_default = any(x.kind == "case" and x.name == "default" for x in body)
        cur = DEAD
        inner = _Out()
        for x in body:
            if x.kind == "case":
                cur |= mask
                continue
            if x.kind == "label":
                cur |= self.pending.pop(x.name, DEAD) | self.labels.get(x.name, DEAD)
                continue
            if cur == DEAD:
                continue
            cur = self.node(x, cur, inner)
        res.continues |= inner.continues
        return cur | inner.breaks | (DEAD if has_default else mask)

    def scope(self, n: Node, mask: int, res: _Out) -> int:
        c = self.calls[n.call] if n.call >= 0 else None
        g = self.m.guards.get(c.callee) if c is not None else None
        if c is not None:
            self.record_call(n.call, mask)
        body = n.branches[0]
        if g is None or g.kind in ("lock_guard",):
            r = self.block(body, mask)
            res.breaks |= r.breaks
            res.continues |= r.continues
            return r.out
        inside = mask
        if g.kind == "bql_lock_guard":
            inside = HELD
        elif g.kind in ("with_bql_held", "with_bql_released"):
            inside = HELD if g.kind == "with_bql_held" else NOT_HELD
            self.check_state_arg(c, g.arg, mask, n.line, n.call)
        elif g.kind == "rcu_read_guard":
            self.flow.rcu_read = True
        self.scopes.append(mask)
        r = self.block(body, inside)
        self.scopes.pop()
        if n.name == "for":
            res.breaks |= DEAD  # a break leaves the guard's own one-shot loop
        else:
            res.breaks |= mask if r.breaks else DEAD
            res.continues |= mask if r.continues else DEAD
        return mask if (r.out or r.breaks) else DEAD

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

    def assertion(self, n: Node, mask: int) -> int:
        for piece in split_conjuncts(n.text):
            c = self.cond(piece)
            if c.kind == "bql_locked":
                want = NOT_HELD if c.negated else HELD
                if mask & ~want & BOTH:
                    kind = "requires_no_bql" if c.negated else "requires_bql"
                    self.flow.events.append(Event(kind, n.line, mask, detail=f"assert({piece})"))
                mask &= want
            elif c.kind == "param_eq_bql" and c.param in self.val:
                want = HELD if self.val[c.param] != c.negated else NOT_HELD
                if mask & ~want & BOTH:
                    self.flow.events.append(Event(
                        "param_mismatch", n.line, mask,
                        detail=f"{c.param}={str(self.val[c.param]).lower()}"))
                mask &= want
            elif c.kind == "in_coroutine" and not c.negated:
                self.co = True
        return mask

    # -- calls --------------------------------------------------------------------

    def record_call(self, idx: int, mask: int) -> None:
        self.flow.at_call[idx] = self.flow.at_call.get(idx, DEAD) | mask
        if self.co:
            self.flow.co_guarded.add(idx)

    def call(self, idx: int, line: int, mask: int) -> int:
        c = self.calls[idx]
        self.record_call(idx, mask)
        name = c.callee
        m = self.m
        op = m.bql_op(name)
        if op == "lock":
            if mask & HELD:
                self.flow.events.append(Event("double_lock", line, mask, idx))
            return HELD
        if op == "unlock":
            if mask & NOT_HELD:
                self.flow.events.append(Event("unlock_not_held", line, mask, idx))
            return NOT_HELD
        if op == "cond_wait":
            if mask & NOT_HELD:
                self.flow.events.append(Event("requires_bql", line, mask, idx, name))
            return mask
        if name in m.noreturn or c.noreturn:
            return DEAD
        if name in m.rcu_read_lock:
            self.flow.rcu_read = True
        if name in m.requires_bql or name.startswith(m.requires_bql_prefixes):
            if mask & NOT_HELD:
                self.flow.events.append(Event("requires_bql", line, mask, idx, name))
            return mask
        if c.via != "direct":
            return mask
        key = self.a.p.resolve_name(name, c.caller_file, c.callee_key)
        if not key or key == self.info.key:
            return mask
        callee = self.a.p.functions[key]
        val = self.a.callee_valuation(c, callee, self.val)
        need, need_not = self.a.requires(key, val)
        if need and mask & NOT_HELD:
            self.flow.events.append(Event("requires_bql", line, mask, idx, name))
        if need_not and mask & HELD:
            self.flow.events.append(Event("requires_no_bql", line, mask, idx, name))
        return self.a.exit_state(key, mask, val) or mask
