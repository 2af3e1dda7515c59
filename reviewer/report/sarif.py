"""SARIF 2.1.0 for a scan: rules with their documentation, results with
partialFingerprints, baselineState (new / absent), witness chains as code
flows, and a tool notification per degraded TU."""

from __future__ import annotations

from typing import Any

from reviewer import __version__
from reviewer.findings import Finding
from reviewer.rules import all_rules
from reviewer.scan import ScanReport

_LEVEL = {"error": "error", "warning": "warning", "note": "note"}


def _rules() -> tuple[list[dict[str, Any]], dict[str, int]]:
    rules = []
    index: dict[str, int] = {}
    for i, r in enumerate(all_rules().values()):
        index[r.id] = i
        rules.append({
            "id": r.id,
            "name": r.name,
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.section("What it does")},
            "help": {"text": r.doc, "markdown": r.doc},
            "defaultConfiguration": {"level": _LEVEL.get(r.severity, "warning")},
            "properties": {"status": r.status, "tags": ["qemu", "threading"]},
        })
    return rules, index


def _location(file: str, line: int, message: str = "") -> dict[str, Any]:
    loc: dict[str, Any] = {
        "physicalLocation": {
            "artifactLocation": {"uri": file, "uriBaseId": "SRCROOT"},
            "region": {"startLine": max(1, line)},
        }
    }
    if message:
        loc["message"] = {"text": message}
    return loc


def _result(f: Finding, state: str, commit: str, index: dict[str, int]) -> dict[str, Any]:
    res: dict[str, Any] = {
        "ruleId": f.rule,
        "level": _LEVEL.get(f.severity, "warning"),
        "message": {"text": f"{f.message} Fix: {f.fix}" if f.fix else f.message},
        "locations": [_location(f.file, f.line)],
        "partialFingerprints": {"reviewer/v1": f.fingerprint},
        "baselineState": state,
        "properties": {"commit": commit, "function": f.function, "contexts": list(f.contexts)},
    }
    if f.rule in index:
        res["ruleIndex"] = index[f.rule]
    if f.related:
        res["relatedLocations"] = [
            {"id": i, **_location(r.file, r.line, r.message)} for i, r in enumerate(f.related)
        ]
    if len(f.chain) > 1:
        res["codeFlows"] = [{
            "message": {"text": " -> ".join(f.chain)},
            "threadFlows": [{
                "locations": [
                    {"location": {"message": {"text": f"{name}()"}}, "nestingLevel": i}
                    for i, name in enumerate(f.chain)
                ]
            }],
        }]
    return res


def sarif_document(report: ScanReport) -> dict[str, Any]:
    rules, index = _rules()
    results = []
    notes = []
    for p in report.patches:
        for f in p.new:
            results.append(_result(f, "new", p.commit.sha, index))
        for f in p.fixed:
            results.append(_result(f, "absent", p.commit.sha, index))
        for file, errors in p.degraded:
            notes.append({
                "level": "warning",
                "message": {"text": f"{file} parsed with {errors} errors at "
                            f"{p.commit.sha[:12]}: findings there may be missing"},
                "locations": [_location(file, 1)],
            })
    for prob in report.problems:
        notes.append({"level": "note", "message": {"text": prob}})
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "reviewer",
                "version": __version__,
                "informationUri": "https://pypi.org/project/qemu-reviewer/",
                "rules": rules,
            }},
            "originalUriBaseIds": {"SRCROOT": {"uri": "file://" + report.repo.rstrip("/") + "/"}},
            "invocations": [{
                "executionSuccessful": True,
                "toolExecutionNotifications": notes,
            }],
            "versionControlProvenance": [{
                "repositoryUri": "file://" + report.repo,
                "revisionId": report.patches[-1].commit.sha if report.patches else report.base,
            }],
            "results": results,
        }],
    }
