"""A thread reaches RCU read-side code without rcu_register_thread().

## What it does
For each `qemu_thread_create()` entry function, flags it when code the thread
reaches enters an RCU read-side critical section (`rcu_read_lock()`,
`RCU_READ_LOCK_GUARD()`, `WITH_RCU_READ_LOCK_GUARD()`) while the entry function
does not call `rcu_register_thread()` (itself or through a direct callee).

## Why is this bad?
QEMU's RCU tracks readers per registered thread. An unregistered reader is
invisible to `synchronize_rcu()`: memory it still reads can be freed under it.

## Example
```c
static void *migration_incoming_thread(void *opaque)
{
    qemu_loadvm_state(f, false, errp);   /* reaches rcu_read_lock() */
}
```

## Use instead
```c
static void *migration_incoming_thread(void *opaque)
{
    rcu_register_thread();
    ...
    rcu_unregister_thread();
}
```

## Options
None.
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.engine import RuleContext
from reviewer.findings import Finding, Related

ID = "QM008"
NAME = "thread-without-rcu-registration"
SEVERITY = "warning"
STATUS = "stable"


def _registers(ctx: RuleContext, key: str, depth: int = 2) -> bool:
    info = ctx.program.functions.get(key)
    if info is None:
        return False
    for site in info.sites.values():
        if site.call.callee in ctx.model.rcu_register:
            return True
        if depth > 1 and site.call.via == "direct":
            keys, _ = ctx.program.callees(site)
            if any(_registers(ctx, k, depth - 1) for k in keys):
                return True
    return False


def check(ctx: RuleContext) -> Iterator[Finding]:
    done: set[str] = set()
    for reg in ctx.program.registrations:
        if reg.context != "thread" or reg.target in done:
            continue
        done.add(reg.target)
        if _registers(ctx, reg.target):
            continue
        tctx = f"thread {reg.thread_name}"
        best = None
        for states in ctx.contexts.by_fn.values():
            for st in states:
                if st.ctx != tctx:
                    continue
                if ctx.bql.flow(st.fn, st.bql, st.val).rcu_read and (
                    best is None or len(ctx.chain(st)) < len(ctx.chain(best))
                ):
                    best = st
        if best is None:
            continue
        info = ctx.program.functions[reg.target]
        reader = ctx.program.functions[best.fn]
        yield ctx.finding(ID, "thread", info=info, line=info.fact.line, states=[best],
                          symbols=(reg.thread_name,), thread=reg.thread_name,
                          reader=reader.name,
                          related=(Related(reader.fact.file, reader.fact.line,
                                           f"{reader.name}() reads under RCU"),))
