"""exit() is reachable from a plain thread.

## What it does
Flags calls of `exit()` (and the API model's other process-exit calls) in
functions that a `qemu_thread_create()` entry reaches.

## Why is this bad?
`exit()` runs the atexit handlers and exit notifiers, which need the BQL and
assume the main thread; from a migration thread they race with the main loop
or deadlock.

## Example
```c
static void *migration_incoming_thread(void *opaque)
{
    if (ret < 0) {
        exit(EXIT_FAILURE);
    }
}
```

## Use instead
Record the failure and let a bottom half in the main loop exit
(`migration_bh_schedule()`).

## Options
None.
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.engine import RuleContext
from reviewer.findings import Finding

ID = "QM009"
NAME = "exit-off-main-thread"
SEVERITY = "error"
STATUS = "stable"


def check(ctx: RuleContext) -> Iterator[Finding]:
    for info, site in ctx.sites():
        c = site.call
        if c.callee not in ctx.model.exit:
            continue
        threads = [st for st, fl in ctx.flows(info.key)
                   if st.ctx.startswith("thread") and fl.at_call.get(site.index, 0)]
        if threads:
            yield ctx.finding(ID, "exit", info=info, line=c.line, states=threads,
                              symbols=(c.callee,), callee=c.callee)
