"""The BQL is taken while held, released while not held, or left in different states.

## What it does
Follows the BQL state through each function (bql_lock/bql_unlock and their
pre-9.0 names, BQL_LOCK_GUARD, WITH_BQL_HELD/WITH_BQL_RELEASED, assertions and
branches on bql_locked()) and flags, on some path: `bql_lock()` while the BQL
may already be held, `bql_unlock()` while it may not be held, and a function
whose paths return with different BQL states for the same entry state. For a
function that entry points reach, the entry states are the ones they reach it
with (named in the finding); for others, only what goes wrong whatever the
entry state.

## Why is this bad?
The BQL is not recursive: taking it twice deadlocks or asserts, and releasing
it when not held is undefined. A path that returns with the lock in another
state than its siblings leaves every caller guessing; it is the classic error
path that forgot its unlock.

## Example
```c
bql_lock();
if (mis->state < 0) {
    return NULL;          /* returns holding the BQL */
}
bql_unlock();
```

## Use instead
Release on every path, or scope the lock so the compiler does it:
```c
WITH_BQL_HELD(false) {
    if (mis->state < 0) {
        return NULL;
    }
}
```

## Options
None.
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.bql import Event, Flow, mask_text
from reviewer.analysis.engine import RuleContext
from reviewer.findings import Finding

ID = "QM003"
NAME = "bql-imbalance"
SEVERITY = "error"
STATUS = "stable"

_KINDS = ("double_lock", "unlock_not_held", "inconsistent_exit")


def _events(fl: Flow) -> list[Event]:
    """A double lock is the root cause: the unlocks after it that then look
    unbalanced are its consequence, not findings of their own."""
    first = min((e.line for e in fl.events if e.kind == "double_lock"), default=None)
    return [e for e in fl.events
            if not (first is not None and e.kind == "unlock_not_held" and e.line > first)]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for key, info in ctx.program.functions.items():
        flows = ctx.flows(key)
        if flows:
            for kind in _KINDS:
                hits: dict[int, list] = {}  # type: ignore[type-arg]
                for st, fl in flows:
                    for e in _events(fl):
                        if e.kind == kind:
                            hits.setdefault(e.line, []).append((st, e))
                for nth, (line, pairs) in enumerate(sorted(hits.items())):
                    states = [st for st, _ in pairs]
                    mask = 0
                    for _, e in pairs:
                        mask |= e.mask
                    yield ctx.finding(ID, kind, info=info, line=line, states=states,
                                      symbols=(kind, str(nth)),
                                      state=mask_text(mask), lines=pairs[0][1].detail)
            continue
        # Reached by no entry point: report what fails whatever the entry state.
        held, not_held = ctx.static_flows(key)
        for kind in _KINDS:
            a = {e.line: e for e in _events(held) if e.kind == kind}
            b = {e.line: e for e in _events(not_held) if e.kind == kind}
            for nth, line in enumerate(sorted(set(a) & set(b))):
                yield ctx.finding(ID, kind, info=info, line=line,
                                  symbols=(kind, str(nth)),
                                  state=mask_text(a[line].mask | b[line].mask),
                                  lines=a[line].detail)

