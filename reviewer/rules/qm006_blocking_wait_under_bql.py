"""A blocking wait is made while the BQL may be held.

## What it does
Flags calls that block until another thread acts (`qemu_thread_join()`,
`qemu_sem_wait()`, `qemu_event_wait()`, `qemu_cond_wait()` on a non-BQL mutex,
`synchronize_rcu()`, and the API model's other blocking calls) made where some
context holds the BQL. For `qemu_thread_join()` it looks at the joined thread:
when that thread's code takes the BQL, the finding says it deadlocks; otherwise
it says that it could not prove the thread never needs the BQL.

## Why is this bad?
The waited-for thread may need the BQL to make progress (to finish a load, to
run a bottom half, to take it around a device hook): holding the BQL while
waiting for it deadlocks the whole VM.

## Example
```c
bql_lock();
qemu_thread_join(&mis->load_thread);   /* the load thread takes the BQL */
```

## Use instead
Release the BQL around the wait (`WITH_BQL_RELEASED(true) { ... }`), or wait
from a context that does not hold it.

## Options
The blocking calls are listed in the API model (`[blocking] calls`).
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.engine import RuleContext
from reviewer.findings import Finding

ID = "QM006"
NAME = "blocking-wait-under-bql"
SEVERITY = "warning"
STATUS = "preview"


def _handle(text: str) -> str:
    """A thread handle as written, reduced to what names the thread: the last
    field for a struct member (`&mis->load_thread` and `&inc.load_thread` are
    `.load_thread`), the whole name for a plain variable (`&thread` matches
    only `&thread`, never `&p->thread`)."""
    t = text.replace("&", "").replace(" ", "").replace("(", "").replace(")", "")
    for sep in ("->", "."):
        if sep in t:
            return "." + t.rsplit(sep, 1)[-1]
    return t


def thread_takes_bql(ctx: RuleContext, thread_name: str) -> str:
    """Name of a function in the thread that takes the BQL, or ""."""
    lock = ctx.model.bql_lock
    for key, states in ctx.contexts.by_fn.items():
        if not any(s.ctx == f"thread {thread_name}" for s in states):
            continue
        info = ctx.program.functions[key]
        for site in info.sites.values():
            if site.call.callee in lock:
                return str(info.name)
            g = ctx.model.guards.get(site.call.callee)
            if g is not None and g.kind in ("bql_lock_guard", "with_bql_held"):
                return str(info.name)
    return ""


def check(ctx: RuleContext) -> Iterator[Finding]:
    m = ctx.model
    for info, site in ctx.sites():
        c = site.call
        if c.callee not in m.blocking:
            continue
        held = [st for st, fl in ctx.flows(info.key) if fl.at_call.get(site.index, 0) & 1]
        if not held:
            continue
        variant, taker, thread = "unproven", "", ""
        if c.callee in m.join and c.args:
            h = _handle(c.args[0])
            for reg in ctx.program.registrations:
                if reg.context == "thread" and reg.site.call.args and _handle(
                    reg.site.call.args[0]) == h:
                    thread = reg.thread_name
                    taker = thread_takes_bql(ctx, thread)
                    variant = "join_deadlock" if taker else "join_unproven"
                    break
        yield ctx.finding(ID, variant, info=info, line=c.line, states=held,
                          symbols=(c.callee, c.args[0] if c.args else ""), callee=c.callee,
                          thread=thread, taker=taker)
