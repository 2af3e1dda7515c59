"""Report documents for findings (analyze) and contexts, as plain data."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from reviewer import __version__
from reviewer.findings import Finding

if TYPE_CHECKING:  # types only: a cached re-scan renders without loading these
    from reviewer.analysis.contexts import Contexts
    from reviewer.analysis.engine import Analysis
    from reviewer.analysis.program import Program
    from reviewer.extract.runner import RunResult

FINDINGS_DOC_VERSION = 1


def finding_data(f: Finding) -> dict[str, Any]:
    d = asdict(f)
    d["chain"] = list(f.chain)
    d["contexts"] = list(f.contexts)
    d["related"] = [asdict(r) for r in f.related]
    d["symbols"] = list(f.symbols)
    d["fingerprint"] = f.fingerprint
    return d


def degraded_data(result: RunResult) -> list[dict[str, Any]]:
    return [
        {"file": tu.file, "errors": tu.errors, "failed": tu.failed,
         "missing_headers": list(tu.missing_headers[:5])}
        for tu in result.facts.tus if tu.degraded
    ]


def analysis_document(result: RunResult, analysis: Analysis) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for f in analysis.findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    return {
        "schema": FINDINGS_DOC_VERSION,
        "tool": {"name": "reviewer", "version": __version__},
        "root": result.plan.root,
        "mode": result.plan.mode,
        "tus": len(result.facts.tus),
        "problems": result.problems,
        "degraded": degraded_data(result),
        "counts": counts,
        "suppressed": len(analysis.suppressed),
        "findings": [finding_data(f) for f in analysis.findings],
    }


def contexts_document(program: Program, contexts: Contexts, name: str) -> dict[str, Any]:
    matches = []
    for info in program.find(name):
        reaches = contexts.reaches(info.key)
        unresolved = sorted({why for (fn, _), why in contexts.unresolved.items()
                             if fn == info.key})
        matches.append({
            "function": info.name,
            "key": info.key,
            "file": info.fact.file,
            "line": info.fact.line,
            "annotations": list(info.annotations),
            "state_params": list(info.state_params),
            "contexts": [
                {
                    "context": r.ctx,
                    "bql": r.bql_text,
                    "chain": list(r.chain),
                    "via": list(r.vias),
                    "valuations": [dict(v) for v in r.valuations],
                }
                for r in reaches
            ],
            "unresolved_calls": unresolved,
        })
    return {"schema": 1, "function": name, "matches": matches}
