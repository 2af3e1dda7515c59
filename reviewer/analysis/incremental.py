"""BQL flows kept from one version of the program to the next (reviewer scan).

A function's flow depends on its own facts, on the functions its direct
calls resolve to, and on their flows (bql.py). From one patch of a series to
the next most functions keep all three, and their flows are reused instead of
computed again: that is about half of the analysis of migration/.

A flow is reused only for a function whose own facts are those it had before
(its Function, and the TU's calls its body names by index: what the flow
reads), whose direct calls resolve to the same keys, and whose callees are all
reused too. Its TU may have been parsed, carried or spliced again: a header
change that moved nothing in this function, or an edit to another function of
the file that kept its calls' indices, leaves its flow as it was. Functions on a
cycle of direct calls, or calling into one, are always computed again: there
a flow depends on where the cycle was entered (the recursion cut in
BqlAnalysis.flow), that is on the order of the queries, and the order is only
the one a fresh analysis has when all of them are computed as they come.
Computing a reused function never reaches one of those, so skipping it does
not change that order: the analysis gives what a fresh one gives
(tests/test_scan.py compares the two on a series).
"""

from __future__ import annotations

from dataclasses import dataclass

from reviewer.analysis.bql import Flow, Valuation
from reviewer.analysis.program import Program
from reviewer.extract.facts import Call, Function
from reviewer.model.classify import iter_nodes

FlowKey = tuple[str, int, Valuation]
# (the file of its TU, resolved direct callees, its Function, its TU's calls):
# what its flow reads of the program besides its callees' flows.
Shape = tuple[str, tuple[str, ...], Function, tuple[Call, ...]]


@dataclass
class FlowMemo:
    """The reusable flows of one analysed version, and what they assumed."""

    version: str
    flows: dict[FlowKey, Flow]
    shapes: dict[str, Shape]


def _shapes(program: Program) -> dict[str, Shape]:
    out: dict[str, Shape] = {}
    for key, info in program.functions.items():
        callees: set[str] = set()
        for site in info.sites.values():
            if site.call.via == "direct":  # what BqlAnalysis follows
                callees.update(k for k in program.callees(site)[0] if k != key)
        out[key] = (info.tu.file, tuple(sorted(callees)), info.fact, info.tu.calls)
    return out


def _same(old: Shape, new: Shape) -> bool:
    """Would the function's flow read the same facts? Its Function (the call
    indices in its body included) and the calls at those indices."""
    if old[:3] != new[:3]:
        return False
    if old[3] is new[3]:
        return True
    a, b = old[3], new[3]
    return all(n.call < 0 or a[n.call] == b[n.call] for n in iter_nodes(new[2].body))


def _on_cycles(shapes: dict[str, Shape]) -> set[str]:
    """Functions on a cycle of direct calls or calling into one."""
    # Peel off, repeatedly, the functions whose callees are all peeled:
    # what remains is on a cycle or reaches one.
    callers: dict[str, list[str]] = {}
    left: dict[str, int] = {}
    for key, (_, callees, _, _) in shapes.items():
        inside = [c for c in callees if c in shapes]
        left[key] = len(inside)
        for c in inside:
            callers.setdefault(c, []).append(key)
    ready = [k for k, n in left.items() if n == 0]
    while ready:
        k = ready.pop()
        for caller in callers.get(k, ()):
            left[caller] -= 1
            if left[caller] == 0:
                ready.append(caller)
    return {k for k, n in left.items() if n > 0}


def reusable(program: Program, memo: FlowMemo | None, changed: set[str]
             ) -> tuple[dict[FlowKey, Flow], dict[str, Shape], set[str]]:
    """(the memo's flows that hold for `program`, its shapes, the functions
    on or into cycles). `changed`: files of the TUs whose facts are not the
    ones the memo's version was analysed with: the others are the same
    objects, and their functions' facts need no comparing."""
    shapes = _shapes(program)
    cyclic = _on_cycles(shapes)
    if memo is None:
        return {}, shapes, cyclic
    clean: dict[str, bool] = {}
    for start in shapes:
        # Post-order over the acyclic part (a function is clean when its
        # callees are), without recursion.
        stack = [(start, False)]
        while stack:
            key, expanded = stack.pop()
            if key in clean:
                continue
            shape = shapes.get(key)
            old = memo.shapes.get(key)
            if (shape is None or key in cyclic or old is None
                    or not (old[:2] == shape[:2] if shape[0] not in changed
                            else _same(old, shape))):
                clean[key] = False
                continue
            if not expanded:
                stack.append((key, True))
                stack.extend((c, False) for c in shape[1] if c not in clean)
                continue
            clean[key] = all(clean.get(c, False) for c in shape[1])
    flows = {k: f for k, f in memo.flows.items() if clean.get(k[0], False)}
    return flows, shapes, cyclic


def export(version: str, flows: dict[FlowKey, Flow], shapes: dict[str, Shape],
           cyclic: set[str]) -> FlowMemo:
    return FlowMemo(version, {k: f for k, f in flows.items() if k[0] not in cyclic}, shapes)
