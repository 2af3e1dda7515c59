"""A coroutine_fn is called from code that is not a coroutine (or a no_coroutine_fn from one).

## What it does
Flags a call to a function marked `coroutine_fn` from a function that is not
`coroutine_fn` and not under a `qemu_in_coroutine()` check (a
`coroutine_mixed_fn` caller counts only under such a check), and a call to a
`no_coroutine_fn` function from a `coroutine_fn`.

## Why is this bad?
A `coroutine_fn` may yield. Outside a coroutine there is nothing to yield to:
QEMU aborts, or worse, the yield happens in whatever coroutine the thread's
leader happens to be. When loading moves from a coroutine into a thread, every
`coroutine_fn` left on the path becomes this bug.

## Example
```c
static void *load_thread(void *opaque)
{
    qemu_loadvm_state_co(f);        /* coroutine_fn called from a thread entry */
}
```

## Use instead
Call the non-coroutine variant, mark the caller `coroutine_fn` if it really
runs in a coroutine, or branch on `qemu_in_coroutine()`:
```c
if (qemu_in_coroutine()) {
    qemu_loadvm_state_co(f);
} else {
    qemu_loadvm_state_blocking(f);
}
```

## Options
None.
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.engine import RuleContext
from reviewer.findings import Finding

ID = "QM001"
NAME = "coroutine-fn-outside-coroutine"
SEVERITY = "error"
STATUS = "stable"


def check(ctx: RuleContext) -> Iterator[Finding]:
    p = ctx.program
    coroutine_entries = {r.target for r in p.registrations if r.context == "coroutine"}
    for info, site in ctx.sites():
        c = site.call
        if c.via != "direct":
            continue
        keys, _ = p.callees(site)
        anns = p.annotations_of(c, keys[0] if keys else "")
        caller_anns = p.annotations_for(info)
        caller_co = "coroutine_fn" in caller_anns or info.key in coroutine_entries
        states = ctx.contexts.states(info.key)
        if "coroutine_fn" in anns and not caller_co:
            if ctx.co_guarded(info.key, site.index):
                continue
            if ctx.model.coroutine_category(c.callee) in ("yield", "self") and any(
                st.ctx.startswith("thread") for st in states
            ):
                continue  # QM002 reports it, with the thread and its chain
            variant = "mixed" if "coroutine_mixed_fn" in caller_anns else "plain"
            yield ctx.finding(ID, variant, info=info, line=c.line, states=states,
                              symbols=(c.callee,), callee=c.callee)
        elif "no_coroutine_fn" in anns and "coroutine_fn" in caller_anns:
            yield ctx.finding(ID, "no_coroutine", info=info, line=c.line, states=states,
                              symbols=(c.callee,), callee=c.callee)
