"""A thread joins itself.

## What it does
Flags `qemu_thread_join(&handle)` reached from the thread that was created
with that same handle (`qemu_thread_create(&handle, ...)`), e.g. a cleanup
function written for the main loop and now called at the end of the thread.

## Why is this bad?
`pthread_join()` on the calling thread fails with EDEADLK; QEMU's wrapper
aborts on the error.

## Example
```c
static void *migration_incoming_thread(void *opaque)
{
    ...
    qemu_thread_join(&mis->load_thread);
}
```

## Use instead
Join from another thread: schedule a bottom half (`migration_bh_schedule()`)
that joins the thread in the main loop.

## Options
None.
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.engine import RuleContext
from reviewer.findings import Finding
from reviewer.rules.qm006_blocking_wait_under_bql import _handle

ID = "QM007"
NAME = "thread-joins-itself"
SEVERITY = "error"
STATUS = "stable"


def check(ctx: RuleContext) -> Iterator[Finding]:
    handles: dict[str, set[str]] = {}
    for reg in ctx.program.registrations:
        if reg.context == "thread" and reg.site.call.args:
            handles.setdefault(_handle(reg.site.call.args[0]), set()).add(reg.thread_name)
    for info, site in ctx.sites():
        c = site.call
        if c.callee not in ctx.model.join or not c.args:
            continue
        names = handles.get(_handle(c.args[0]), set())
        own = [st for st, fl in ctx.flows(info.key)
               if fl.at_call.get(site.index, 0) and st.ctx.startswith("thread ")
               and st.ctx[len("thread "):] in names]
        if own:
            yield ctx.finding(ID, "join", info=info, line=c.line, states=own,
                              symbols=(c.args[0],), handle=c.args[0],
                              thread=own[0].ctx[len("thread "):])
