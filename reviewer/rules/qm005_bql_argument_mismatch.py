"""A BQL-state argument (bql_held) disagrees with the BQL state, or a call misses it.

## What it does
For functions with a parameter that says whether the caller holds the BQL
(`bql_held`, or any bool the function passes to `WITH_BQL_HELD()` /
`WITH_BQL_RELEASED()` or asserts equal to `bql_locked()`), flags call sites
whose argument is `true` where the BQL may not be held, or `false` where it may
be held, in some context that reaches them. Also flags calls whose argument
count differs from the callee's parameter list: a caller left behind when a
patch added the parameter.

## Why is this bad?
The callee trusts the argument: with `false` it takes the BQL itself (a
deadlock if the caller holds it); with `true` it skips taking it (a race, and
an assertion failure in WITH_BQL_HELD).

## Example
```c
bql_lock();
ret = qemu_loadvm_state(f, false, errp);   /* but the BQL is held */
```

## Use instead
```c
bql_lock();
ret = qemu_loadvm_state(f, true, errp);
```

## Options
The parameter names are listed in the API model (`[bql] state_params`).
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.bql import HELD, NOT_HELD
from reviewer.analysis.engine import RuleContext
from reviewer.extract.facts import Call
from reviewer.findings import Finding

ID = "QM005"
NAME = "bql-argument-mismatch"
SEVERITY = "error"
STATUS = "stable"


def _consequence(ctx: RuleContext, key: str, call: Call, says_held: bool) -> str:
    """Where the callee notices: its WITH_BQL_*() guard or assertion on the value."""
    callee = ctx.program.functions[key]
    val = ctx.bql.callee_valuation(call, callee, {})
    flow = ctx.bql.flow(key, NOT_HELD if says_held else HELD, val)
    for e in flow.events:
        if e.kind == "guard_mismatch" and e.call >= 0:
            g = callee.tu.calls[e.call]
            return f"{g.macro or g.callee}() in {callee.name}() at {callee.fact.file}:{e.line}"
        if e.kind == "param_mismatch":
            return f"the assertion in {callee.name}() at {callee.fact.file}:{e.line}"
    return ""


def check(ctx: RuleContext) -> Iterator[Finding]:
    p = ctx.program
    for info, site in ctx.sites():
        c = site.call
        if c.via != "direct":
            continue
        keys, _ = p.callees(site)
        if not keys:
            continue
        callee = p.functions[keys[0]]
        params = [x.name for x in callee.fact.params]
        if len(c.values) != len(params) and not callee.fact.variadic and c.values:
            yield ctx.finding(ID, "arity", info=info, line=c.line,
                              states=ctx.contexts.states(info.key),
                              symbols=(c.callee,), callee=c.callee, got=len(c.values),
                              want=len(params), params=", ".join(params))
            continue
        for sp in callee.state_params:
            i = params.index(sp)
            v = c.values[i] if i < len(c.values) else None
            if v not in ("true", "false", "1", "0"):
                continue
            says_held = v in ("true", "1")
            bad_bit = 2 if says_held else 1
            flows = ctx.flows(info.key)
            wrong = [st for st, fl in flows if fl.at_call.get(site.index, 0) & bad_bit]
            if not flows:
                # No entry point reaches the caller: report only a mismatch that
                # holds whatever state it is entered with (it locked just before).
                static = [fl.at_call.get(site.index, 0) for fl in ctx.static_flows(info.key)]
                if not all(m == bad_bit for m in static):
                    continue
            elif not wrong:
                continue
            yield ctx.finding(ID, "constant", info=info, line=c.line, states=wrong,
                              symbols=(c.callee, sp), callee=c.callee, param=sp,
                              value="true" if says_held else "false",
                              consequence=_consequence(ctx, callee.key, c, says_held))
    # Mismatches a callee's own guard or assertion detects for a passed-through
    # parameter: blame the call that chose the valuation.
    for key, info in p.functions.items():
        for st, fl in ctx.flows(key):
            for e in fl.events:
                if e.kind not in ("guard_mismatch", "param_mismatch"):
                    continue
                step = ctx.contexts.steps[st]
                if step.parent is None or step.site is None:
                    continue
                c = step.site.call
                if any(v in ("true", "false") for v in c.values):
                    continue  # a constant: reported above at the call
                if any(v != (step.parent.bql == 1) for _, v in step.parent.val):
                    continue  # the caller was itself given a wrong value: blamed upstream
                caller = p.functions[step.parent.fn]
                yield ctx.finding(ID, "passed", info=caller, line=c.line, states=[st],
                                  symbols=(c.callee, "passed"), callee=c.callee,
                                  inner=info.name, inner_line=e.line, detail=e.detail)
