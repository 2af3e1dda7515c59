"""Code that needs the BQL is reached where the BQL may not be held.

## What it does
Flags a call whose callee needs the BQL (it asserts `bql_locked()`, is listed
in the API model: memory-region transactions, address-space updates,
`run_on_cpu()`, `cpu_synchronize_*()`, QOM/qdev tree changes, ...; or one of its
own callees needs it) made where some context that reaches the call does not
hold the BQL. One finding per call site; it lists the contexts and the chain
from the entry point.

## Why is this bad?
These functions touch state that only the BQL protects. Called from a thread
without the BQL they race with the main loop and the vCPUs; with assertions
enabled they abort.

## Example
```c
static void *migration_incoming_thread(void *opaque)
{
    cpu_synchronize_all_post_init();     /* BQL not held in mig/dst/main */
}
```

## Use instead
Take the BQL around the call (`WITH_BQL_HELD(bql_held) { ... }` or
`bql_lock()`/`bql_unlock()`), or move the work into a bottom half.

## Options
None.
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.contexts import State, Step
from reviewer.analysis.engine import RuleContext
from reviewer.analysis.program import FunctionInfo
from reviewer.findings import Finding, Related

ID = "QM004"
NAME = "bql-required-without-bql"
SEVERITY = "error"
STATUS = "stable"


def _blame(ctx: RuleContext, st: State) -> tuple[State, Step] | None:
    """Walk up through calls made via struct fields: a device hook is written
    for a caller that holds the BQL, so the finding belongs at the indirect call
    that now reaches it without. Returns the state/step of that call, or None."""
    step = ctx.contexts.steps[st]
    last = None
    while step.how == "field" and step.parent is not None:
        last = (st, step)
        st = step.parent
        step = ctx.contexts.steps[st]
    return last


def _reported_by_caller(ctx: RuleContext, st: State) -> bool:
    """The caller's own flow already flags the call into this function."""
    step = ctx.contexts.steps[st]
    if step.parent is None or step.site is None:
        return False
    parent = ctx.bql.flow(step.parent.fn, step.parent.bql, step.parent.val)
    return any(e.kind == "requires_bql" and e.call == step.site.index for e in parent.events)


def check(ctx: RuleContext) -> Iterator[Finding]:
    p = ctx.program
    # (caller key, line, callee) -> (caller info, states, evidence)
    sites: dict[tuple[str, int, str], tuple[FunctionInfo, list[State], str]] = {}

    def add(info: FunctionInfo, line: int, callee: str, evidence: str, st: State) -> None:
        entry = sites.setdefault((info.key, line, callee), (info, [], evidence))
        entry[1].append(st)

    for key, info in p.functions.items():
        for st, fl in ctx.flows(key):
            for e in fl.events:
                if e.kind != "requires_bql" or not e.mask & 2:
                    continue
                if _reported_by_caller(ctx, st):
                    continue
                where = (f"{info.tu.calls[e.call].callee}() at {info.fact.file}:{e.line}"
                         if e.call >= 0 else f"{e.detail} at {info.fact.file}:{e.line}")
                hook = _blame(ctx, st)
                if hook is not None:
                    hst, hstep = hook
                    assert hstep.parent is not None and hstep.site is not None
                    caller = p.functions[hstep.parent.fn]
                    c = hstep.site.call
                    target = p.functions[hst.fn].name
                    add(caller, c.line, c.callee, f"{target}() reached through {c.callee} "
                        f"needs it: {where}", st)
                    continue
                if e.call >= 0:
                    c = info.tu.calls[e.call]
                    add(info, c.line, c.callee, f"{c.callee}() needs it", st)
                    continue
                # The function's own assert: blame the call that brought us here.
                step = ctx.contexts.steps[st]
                if step.parent is None or step.site is None:
                    add(info, e.line, info.name, e.detail, st)
                    continue
                c = step.site.call
                add(p.functions[step.parent.fn], c.line, c.callee,
                    f"{info.name}() has {e.detail} at line {e.line}", st)
    for (_, line, callee), (info, states, evidence) in sorted(
        sites.items(), key=lambda kv: (kv[1][0].fact.file, kv[0][1])
    ):
        yield ctx.finding(ID, "call", info=info, line=line, states=states, symbols=(callee,),
                          callee=callee, evidence=evidence,
                          related=(Related(info.fact.file, line, evidence),))
