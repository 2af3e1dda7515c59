"""SARIF for an audit: one result per hook that needs the BQL and may arrive
without it (the verdicts that are problems)."""

from __future__ import annotations

from typing import Any

from reviewer import __version__
from reviewer.audit import AuditResult


def audit_sarif(result: AuditResult) -> dict[str, Any]:
    rule = {
        "id": "QA001",
        "name": "load-hook-without-bql",
        "shortDescription": {"text": "A load hook that needs the BQL is reached without it."},
        "fullDescription": {"text": "reviewer audit: a device load hook (SaveVMHandlers, "
                            "VMStateDescription, VMStateInfo) is called from a context that "
                            "may not hold the BQL, and the hook needs it."},
        "defaultConfiguration": {"level": "error"},
    }
    results = []
    for h in result.hooks:
        if not h.problem:
            continue
        results.append({
            "ruleId": "QA001",
            "level": "error",
            "message": {"text": f"{h.function}() ({h.hook}) may arrive without the BQL "
                                f"({h.arrival}) from {result.entry} but needs it: "
                                f"{'; '.join(h.evidence)}"},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": h.file},
                "region": {"startLine": max(1, h.line)}}}],
            "partialFingerprints": {"reviewer/audit/v1": f"{h.key}|{h.hook}"},
            "codeFlows": [{"threadFlows": [{"locations": [
                {"location": {"message": {"text": f"{n}()"}}, "nestingLevel": i}
                for i, n in enumerate(h.chain)]}]}],
        })
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "reviewer", "version": __version__,
                                      "rules": [rule]}},
                  "results": results}],
    }
