"""A trace_foo() call has no foo entry in its directory's trace-events.

## What it does
Flags calls of `trace_NAME()` in a directory whose `trace-events` file exists
and has no event `NAME`.

## Why is this bad?
The trace header is generated from `trace-events`: without the entry the
build fails (or, in a tree built before the patch, the call silently goes to a
stale declaration).

## Example
```c
trace_migration_incoming_thread();     /* not in migration/trace-events */
```

## Use instead
Add the event to the directory's `trace-events`:
```
migration_incoming_thread(void) ""
```

## Options
None.
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.engine import RuleContext
from reviewer.findings import Finding

ID = "QM010"
NAME = "missing-trace-event"
SEVERITY = "error"
STATUS = "stable"


def check(ctx: RuleContext) -> Iterator[Finding]:
    m = ctx.model
    for info, site in ctx.sites():
        c = site.call
        if c.via != "direct" or not m.is_trace(c.callee):
            continue
        events = ctx.program.trace_events_for(c.file)
        if events is None:
            continue
        name = c.callee[len(m.trace_prefix):]
        if name not in events:
            yield ctx.finding(ID, "missing", info=info, line=c.line, file=c.file,
                              symbols=(c.callee,), event=name,
                              directory=c.file.rsplit("/", 1)[0] if "/" in c.file else ".")
