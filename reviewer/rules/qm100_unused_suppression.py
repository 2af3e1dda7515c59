"""An inline suppression comment suppresses nothing.

## What it does
Flags `/* reviewer: ignore[ID] reason */` comments for which no finding of
that rule is reported on the same line or the line below.

## Why is this bad?
A stale suppression hides the next real finding on that line and tells
readers something about the code that is no longer true.

## Example
```c
/* reviewer: ignore[QM003] the lock is released by the caller */
qemu_mutex_lock(&s->lock);
```

## Use instead
Remove the comment (or fix the rule ID it names).

## Options
None.
"""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.analysis.engine import RuleContext
from reviewer.findings import Finding

ID = "QM100"
NAME = "unused-suppression"
SEVERITY = "note"
STATUS = "stable"


def check(ctx: RuleContext) -> Iterator[Finding]:
    """Computed by the engine, which sees every suppression comment."""
    return iter(())
