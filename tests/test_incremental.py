"""Which BQL flows one version of a program hands to the next
(reviewer.analysis.incremental): per function, by what its flow reads."""

from __future__ import annotations

from reviewer.analysis.bql import HELD, NOT_HELD, BqlAnalysis
from reviewer.analysis.incremental import FlowMemo, export, reusable
from reviewer.analysis.program import Program
from reviewer.extract.facts import Call, FactSet, Function, Node, TUFacts
from reviewer.model import load_model

MODEL = load_model()


def call(caller: str, callee: str, line: int, macro: str = "") -> Call:
    return Call(caller=caller, callee=callee, via="direct", file="a.c", line=line, col=5,
                macro=macro, caller_file="a.c")


def fn(name: str, line: int, *calls: tuple[int, int]) -> Function:
    """A function at `line` whose body is calls (TU call index, line)."""
    return Function(name=name, file="a.c", line=line, is_definition=True, is_static=False,
                    body=tuple(Node("call", ln, call=i) for i, ln in calls),
                    end_line=line + 5)


def tu(functions: list[Function], calls: list[Call]) -> TUFacts:
    return TUFacts(file="a.c", mode="plain", functions=tuple(functions), calls=tuple(calls))


# f calls g, g takes the BQL, h calls nothing: version 1.
F = fn("f", 10, (0, 11))
G = fn("g", 20, (1, 21))
CALLS = [call("f", "g", 11), call("g", "bql_lock", 21, macro="bql_lock")]


def analysed(facts: TUFacts, memo: FlowMemo | None
             ) -> tuple[set[str], FlowMemo, BqlAnalysis]:
    """(the functions whose flows came from memo, the memo for the next
    version, the analysis with every function's flows computed)."""
    program = Program(FactSet([facts]), MODEL)
    flows, shapes, cyclic = reusable(program, memo, {"a.c"})
    bql = BqlAnalysis(program, reused=flows)
    for key in program.functions:
        for entry in (HELD, NOT_HELD):
            bql.flow(key, entry)
    return {k[0] for k in flows}, export("v", bql.flows, shapes, cyclic), bql


def fresh(facts: TUFacts) -> BqlAnalysis:
    return analysed(facts, None)[2]


def test_an_edit_elsewhere_in_the_tu_keeps_the_flows_of_untouched_functions() -> None:
    _, memo, _ = analysed(tu([F, G, fn("h", 30)], CALLS), None)
    # h gains a call after the others: f's and g's facts are as they were.
    v2 = tu([F, G, fn("h", 30, (2, 31))], [*CALLS, call("h", "bql_unlock", 31, "bql_unlock")])
    reused, _, bql = analysed(v2, memo)
    assert reused == {"f", "g"}
    assert bql.flows == fresh(v2).flows


def test_renumbered_calls_are_not_reused() -> None:
    _, memo, _ = analysed(tu([F, G, fn("h", 30)], CALLS), None)
    # A call earlier in the file shifts every later call's index: f's and g's
    # flows name calls by index, so they are computed again.
    v2 = tu([fn("h", 5, (0, 6)), fn("f", 10, (1, 11)), fn("g", 20, (2, 21))],
            [call("h", "bql_unlock", 6, "bql_unlock"), *CALLS])
    reused, _, bql = analysed(v2, memo)
    assert reused == set()
    assert bql.flows == fresh(v2).flows


def test_a_changed_call_is_not_reused_nor_are_its_callers() -> None:
    _, memo, _ = analysed(tu([F, G, fn("h", 30)], CALLS), None)
    # g's Function is the same, the call at its index is not (bql_lock became
    # bql_unlock): g is computed again, and so is f, which calls it.
    v2 = tu([F, G, fn("h", 30)], [CALLS[0], call("g", "bql_unlock", 21, "bql_unlock")])
    reused, _, bql = analysed(v2, memo)
    assert reused == {"h"}
    assert bql.flows == fresh(v2).flows
    assert bql.flow("f", NOT_HELD).exit == NOT_HELD


def test_reused_flows_equal_a_fresh_analysis_on_fuzzed_series(tmp_path: object) -> None:
    """40 random series of 6 versions (tests/incremental_fuzz.py): findings,
    contexts, chains and flows with reuse equal those of a fresh analysis.
    It finds a dropped call comparison or a dropped callee check in
    reusable() within these seeds."""
    from .incremental_fuzz import run_series

    bad = [got for seed in range(40) if (got := run_series(seed, str(tmp_path)))]
    assert not bad, bad[0]
