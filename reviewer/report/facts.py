"""The `reviewer facts` document: raw facts plus their classified views.

Schema documented in docs/facts-schema.md; FACTS_DOC_VERSION changes with it.
"""

from __future__ import annotations

from typing import Any

from reviewer import __version__
from reviewer.extract.facts import SCHEMA_VERSION
from reviewer.extract.runner import RunResult
from reviewer.model import ApiModel
from reviewer.model.classify import view

FACTS_DOC_VERSION = 1


def facts_document(result: RunResult, model: ApiModel, with_body: bool = False) -> dict[str, Any]:
    tus = []
    for tu in result.facts.tus:
        raw = tu.to_json()
        if not with_body:
            for f in raw["functions"]:
                f.pop("body", None)
        tus.append({
            "file": tu.file,
            "mode": tu.mode,
            "errors": tu.errors,
            "degraded": tu.degraded,
            "failed": tu.failed,
            "missing_headers": raw["missing_headers"],
            "diagnostics": raw["diagnostics"][:10],
            "functions": raw["functions"],
            "calls": raw["calls"],
            "field_stores": raw["field_stores"],
            "object_refs": raw["object_refs"],
            "addressed": raw["addressed"],
            **view(tu, model),
        })
    return {
        "schema": FACTS_DOC_VERSION,
        "facts_schema": SCHEMA_VERSION,
        "tool": {"name": "reviewer", "version": __version__},
        "root": result.plan.root,
        "mode": result.plan.mode,
        "resource_dir": result.plan.resource[1],
        "parsed": result.parsed,
        "cached": result.cached,
        "problems": result.problems,
        "tus": tus,
    }
