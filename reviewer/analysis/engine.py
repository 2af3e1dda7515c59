"""Run the rules over a program: build the analysis once, call each rule, apply
inline suppressions, and turn a crashing rule into a finding instead of a
traceback."""

from __future__ import annotations

import functools
import os
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from reviewer.analysis.bql import BOTH, HELD, NOT_HELD, BqlAnalysis, Flow, Valuation, mask_text
from reviewer.analysis.contexts import Contexts, State
from reviewer.analysis.program import FunctionInfo, Program, Site
from reviewer.extract.facts import FactSet
from reviewer.findings import Finding, Related
from reviewer.model import ApiModel
from reviewer.report.render import environment
from reviewer.rules import Rule, all_rules

_SUPPRESS = re.compile(r"reviewer:\s*ignore\[([A-Za-z0-9_,\s-]+)\]")
_TRACE_EVENT = re.compile(r"^\s*(?:[a-z_]+\s+)*?([A-Za-z_]\w*)\s*\(")


class RuleContext:
    """What a rule may read: the program, its BQL flows and contexts, the model,
    and helpers that phrase contexts and chains the same way for every rule."""

    def __init__(self, program: Program,
                 reused: dict[tuple[str, int, Valuation], Flow] | None = None) -> None:
        self.program = program
        self.model: ApiModel = program.model
        self.bql = BqlAnalysis(program, reused)
        self._env = environment()

    @functools.cached_property
    def contexts(self) -> Contexts:
        """Propagated from every entry point of the model, on first use: an
        audit of one thread over the whole tree never needs all of them."""
        return Contexts(self.program, self.bql)

    # -- phrasing ------------------------------------------------------------------

    def text(self, rule_id: str, variant: str, **params: object) -> tuple[str, str]:
        """(message, fix) from templates/rules/<ID>.j2."""
        raw = self._env.get_template(f"rules/{rule_id}.j2").render(variant=variant, **params)
        msg, _, fix = raw.partition("---FIX---")
        return " ".join(msg.split()), " ".join(fix.split())

    def describe(self, states: Iterable[State]) -> tuple[str, ...]:
        merged: dict[str, int] = {}
        for s in states:
            merged[s.ctx] = merged.get(s.ctx, 0) | s.bql
        return tuple(f"{ctx} (BQL {mask_text(m)})" for ctx, m in sorted(merged.items()))

    def chain(self, state: State) -> tuple[str, ...]:
        return self.contexts.chain(state)[0]

    def shortest(self, states: Iterable[State]) -> State:
        return min(states, key=lambda s: (self.contexts.length(s), s.ctx))

    # -- flow helpers --------------------------------------------------------------

    def flows(self, key: str) -> list[tuple[State, Flow]]:
        return [(s, self.bql.flow(s.fn, s.bql, s.val)) for s in self.contexts.states(key)]

    def static_flows(self, key: str) -> list[Flow]:
        """Flows for both entry states, for functions no entry point reaches."""
        return [self.bql.flow(key, HELD), self.bql.flow(key, NOT_HELD)]

    def co_guarded(self, key: str, idx: int) -> bool:
        return any(idx in f.co_guarded for f in self.static_flows(key))

    def sites(self) -> Iterable[tuple[FunctionInfo, Site]]:
        for info in self.program.functions.values():
            for site in info.sites.values():
                yield info, site

    def finding(self, rule: Rule | str, variant: str, *, info: FunctionInfo, line: int,
                file: str = "", states: Iterable[State] = (), symbols: tuple[str, ...] = (),
                related: tuple[Related, ...] = (), **params: object) -> Finding:
        r = all_rules()[rule] if isinstance(rule, str) else rule
        sts = list(states)
        chain = self.chain(self.shortest(sts)) if sts else ()
        contexts = self.describe(sts)
        msg, fix = self.text(r.id, variant, function=info.name, chain=chain,
                             contexts=contexts, **params)
        return Finding(
            rule=r.id, name=r.name, severity=r.severity, function=info.name,
            file=file or info.fact.file, line=line, message=msg, fix=fix, chain=chain,
            contexts=contexts, related=related, symbols=(variant, *symbols),
        )


def mask_of(states_flows: list[tuple[State, Flow]], idx: int) -> int:
    m = 0
    for _, f in states_flows:
        m |= f.at_call.get(idx, 0)
    return m & BOTH


@dataclass
class Analysis:
    findings: list[Finding] = field(default_factory=list)
    suppressed: list[Finding] = field(default_factory=list)
    context: RuleContext | None = None


def read_source(path: str, sources: Mapping[str, bytes | None] | None) -> bytes | None:
    """A file as the analysis sees it: its version in `sources` if there is one
    (None there: known to be absent), else the one on disk."""
    if sources is not None and path in sources:
        return sources[path]
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


Sources = Mapping[str, bytes | None]  # path -> the file's bytes as analysed (None: absent)


def read_trace_events(root: str, dirs: Iterable[str],
                      sources: Sources | None = None) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for d in sorted(set(dirs)):
        data = read_source(os.path.join(root, d, "trace-events"), sources)
        if data is None:
            continue
        names = set()
        for line in data.decode("utf-8", "replace").splitlines():
            if line.lstrip().startswith("#"):
                continue
            m = _TRACE_EVENT.match(line)
            if m:
                names.add(m.group(1))
        out[d] = frozenset(names)
    return out


def analyze(facts: FactSet, model: ApiModel, *, root: str, rules: Iterable[Rule] | None = None,
            sources: Mapping[str, bytes | None] | None = None, debug: bool = False,
            preview: bool = False,
            reuse: Callable[[Program], dict[tuple[str, int, Valuation], Flow]] | None = None,
            ) -> Analysis:
    """reuse: given the program, the flows that hold from another version's
    analysis (reviewer.analysis.incremental)."""
    dirs = {os.path.dirname(tu.file) for tu in facts.tus}
    program = Program(facts, model, read_trace_events(root, dirs, sources))
    ctx = RuleContext(program, reuse(program) if reuse is not None else None)
    found: list[Finding] = []
    # Preview rules (too noisy or unproven on real trees yet) run only on request.
    selected = list(rules) if rules is not None else [
        r for r in all_rules().values() if preview or r.status != "preview"
    ]
    for rule in selected:
        if rule.id == "QM100":
            continue
        try:
            found.extend(rule.check(ctx))
        except Exception as exc:  # one broken rule must not hide the others
            if debug:
                raise
            where = traceback.extract_tb(exc.__traceback__)[-1]
            found.append(Finding(
                rule="internal-error", name="internal-error", severity="error",
                function="", file=os.path.relpath(where.filename), line=where.lineno or 0,
                message=f"rule {rule.id} crashed: {type(exc).__name__}: {exc}; its findings "
                "are missing (rerun with --debug)", symbols=(rule.id,),
            ))
    uniq: dict[tuple[str, str, int, str], Finding] = {}
    for f in found:
        uniq.setdefault((f.rule, f.file, f.line, f.fingerprint), f)
    result = Analysis(context=ctx)
    _suppress(sorted(uniq.values(), key=Finding.sort_key), result, root, facts, sources,
              any(r.id == "QM100" for r in selected), ctx)
    return result


def _suppress(findings: list[Finding], result: Analysis, root: str, facts: FactSet,
              sources: Sources | None, report_unused: bool, ctx: RuleContext) -> None:
    """`/* reviewer: ignore[QM003] why */` on the finding's line or the line above."""
    marks: dict[tuple[str, int], set[str]] = {}
    files = {tu.file for tu in facts.tus} | {f.file for f in findings}
    for rel in files:
        data = read_source(rel if os.path.isabs(rel) else os.path.join(root, rel), sources)
        if data is None or b"reviewer:" not in data:  # most files: no comment at all
            continue
        for i, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            for m in _SUPPRESS.finditer(line):
                ids = {x.strip().upper() for x in m.group(1).split(",") if x.strip()}
                marks[(rel, i)] = ids
    used: set[tuple[str, int]] = set()
    for f in findings:
        hit = None
        for ln in (f.line, f.line - 1):
            ids = marks.get((f.file, ln), set())
            if ids and (f.rule in ids or f.name.upper() in ids):
                hit = (f.file, ln)
                break
        if hit:
            used.add(hit)
            result.suppressed.append(f)
        else:
            result.findings.append(f)
    if report_unused:
        rule = all_rules()["QM100"]
        for (rel, ln), ids in sorted(marks.items()):
            if (rel, ln) in used:
                continue
            msg, fix = ctx.text("QM100", "unused", ids=sorted(ids))
            result.findings.append(Finding(
                rule=rule.id, name=rule.name, severity=rule.severity, function="",
                file=rel, line=ln, message=msg, fix=fix, symbols=(rel, *sorted(ids)),
            ))
        result.findings.sort(key=Finding.sort_key)
