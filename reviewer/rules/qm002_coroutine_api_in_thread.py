"""Coroutine-only code is reachable from a plain thread.

## What it does
Flags a call to a coroutine-only API (`qemu_coroutine_yield()`,
`qemu_coroutine_self()`, `qio_channel_yield()`, and the others the API model
lists), or to a `coroutine_fn` from a `coroutine_fn`, in a function that a
`qemu_thread_create()` entry reaches, outside a `qemu_in_coroutine()` branch.
The finding names the thread and the call chain from its entry function.

## Why is this bad?
In a plain thread, `qemu_coroutine_self()` returns the thread's leader
coroutine and yielding from it aborts. Code that was written for a coroutine in
the main loop and is now called from a migration thread keeps these calls
unless the patch removes them.

## Example
```c
static void *migration_incoming_thread(void *opaque)
{
    mis->loadvm_co = qemu_coroutine_self();   /* no coroutine here */
}
```

## Use instead
Remove the coroutine plumbing from the thread's path (wait on a QemuEvent or
QemuSemaphore instead of yielding), or keep it behind `qemu_in_coroutine()`.

## Options
None.
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.engine import RuleContext, mask_of
from reviewer.findings import Finding

ID = "QM002"
NAME = "coroutine-api-in-thread"
SEVERITY = "error"
STATUS = "stable"


def check(ctx: RuleContext) -> Iterator[Finding]:
    p = ctx.program
    m = ctx.model
    for info, site in ctx.sites():
        c = site.call
        cat = m.coroutine_category(c.callee)
        is_api = cat in ("yield", "self")
        keys, _ = p.callees(site) if c.via == "direct" else ([], "")
        caller_co = "coroutine_fn" in p.annotations_for(info)
        is_co_fn = (not is_api and c.via == "direct" and caller_co
                    and "coroutine_fn" in p.annotations_of(c, keys[0] if keys else ""))
        if not (is_api or is_co_fn):
            continue
        flows = [(s, f) for s, f in ctx.flows(info.key) if s.ctx.startswith("thread")]
        reached = [s for s, f in flows if f.at_call.get(site.index, 0)
                   and site.index not in f.co_guarded]
        if not reached or not mask_of(flows, site.index):
            continue
        yield ctx.finding(ID, "api" if is_api else "coroutine_fn", info=info, line=c.line,
                          states=reached, symbols=(c.callee,), callee=c.callee)
