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

from reviewer.analysis.engine import RuleContext
from reviewer.findings import Finding, Related

ID = "QM004"
NAME = "bql-required-without-bql"
SEVERITY = "error"
STATUS = "stable"


def check(ctx: RuleContext) -> Iterator[Finding]:
    p = ctx.program
    # (caller key, line, callee) -> (info, states, evidence)
    sites: dict[tuple[str, int, str], tuple] = {}  # type: ignore[type-arg]
    for key, info in p.functions.items():
        for st, fl in ctx.flows(key):
            for e in fl.events:
                if e.kind != "requires_bql" or not e.mask & 2:
                    continue
                if e.call >= 0:
                    c = info.tu.calls[e.call]
                    k = (key, c.line, c.callee)
                    entry = sites.setdefault(k, (info, [], e.detail, c.callee))
                    entry[1].append(st)
                    continue
                # The function's own assert: blame the call that brought us here.
                step = ctx.contexts.steps[st]
                if step.parent is None or step.site is None:
                    k = (key, e.line, info.name)
                    entry = sites.setdefault(k, (info, [], e.detail, info.name))
                    entry[1].append(st)
                    continue
                parent = p.functions[step.parent.fn]
                c = step.site.call
                k = (parent.key, c.line, c.callee)
                entry = sites.setdefault(
                    k, (parent, [], f"{info.name}() has {e.detail} at line {e.line}", c.callee))
                entry[1].append(st)
    for (_, line, callee), (info, states, evidence, sym) in sorted(
        sites.items(), key=lambda kv: (kv[1][0].fact.file, kv[0][1])
    ):
        yield ctx.finding(ID, "call", info=info, line=line, states=states, symbols=(sym,),
                          callee=callee, evidence=evidence,
                          related=(Related(info.fact.file, line, evidence),))
