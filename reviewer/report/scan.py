"""The scan report as data: the one thing templates and serialisers see.

JSON schema: docs/scan-schema.md (SCAN_DOC_VERSION).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from reviewer import __version__
from reviewer.findings import Finding
from reviewer.report.findings import finding_data
from reviewer.scan import ScanReport

SCAN_DOC_VERSION = 1


def _finding(f: Finding, status: str, commit: str,
             excerpts: dict[str, list[tuple[int, str]]] | None = None) -> dict[str, Any]:
    ex = (excerpts or {}).get(f.fingerprint, [])
    return {**finding_data(f), "status": status, "commit": commit,
            "excerpt": [{"line": n, "text": t, "marked": n == f.line} for n, t in ex]}


def scan_document(report: ScanReport, show_preexisting: bool = False) -> dict[str, Any]:
    patches = []
    totals = {"new": 0, "fixed": 0, "preexisting": 0}
    for p in report.patches:
        c = p.commit
        findings = [_finding(f, "new", c.sha, p.excerpts) for f in p.new]
        findings += [_finding(f, "fixed", c.sha, p.excerpts) for f in p.fixed]
        pre = [_finding(f, "preexisting", c.sha) for f in p.preexisting]
        if show_preexisting:
            findings += pre
        totals["new"] += len(p.new)
        totals["fixed"] += len(p.fixed)
        totals["preexisting"] += len(p.preexisting)
        worst = p.worst
        others: dict[str, int] = {}
        for cc in p.context_changes:
            if not cc.touched:
                for a in cc.added:
                    key = f"now also run in {a}"
                    others[key] = others.get(key, 0) + 1
                for r in cc.removed:
                    key = f"no longer run in {r}"
                    others[key] = others.get(key, 0) + 1
        patches.append({
            "commit": c.sha,
            "subject": c.subject,
            "message_id": p.message_id,
            "author": c.author,
            "author_email": c.author_email,
            "date": c.date,
            "files": p.files,
            "skipped": p.skipped,
            "parsed_tus": p.parsed,
            "counts": {"new": len(p.new), "fixed": len(p.fixed), "preexisting": len(pre)},
            "worst": _finding(worst, "new", c.sha) if worst else None,
            "findings": findings,
            "context_changes": [asdict(cc) for cc in p.context_changes],
            "context_summary": dict(sorted(others.items(), key=lambda kv: -kv[1])),
            "signature_changes": [
                {**asdict(sc), "before": list(sc.before), "after": list(sc.after)}
                for sc in p.signature_changes
            ],
            "degraded": [{"file": f, "errors": e} for f, e in p.degraded],
        })
    return {
        "schema": SCAN_DOC_VERSION,
        "tool": {"name": "reviewer", "version": __version__},
        "repository": report.repo,
        "range": report.range,
        "base": report.base,
        "mode": report.mode,
        "problems": report.problems,
        "totals": totals,
        "hidden_by_baseline": report.hidden_by_baseline,
        "patches": patches,
        "remaining": [finding_data(f) for f in report.remaining],
    }
