"""Every rule against its fixtures, checked both ways: every expected finding
fires (`/* expect: QMnnn */` on the line, `/* expect+1: QMnnn */` for the next
line), and every finding is expected. good.c must be silent."""

from __future__ import annotations

import os
import re

import pytest

from reviewer.analysis.engine import analyze
from reviewer.extract.runner import run
from reviewer.model import load_model
from reviewer.rules import SECTIONS, all_rules

from .conftest import FIXTURES

RULES = sorted(all_rules())
_EXPECT = re.compile(r"expect(\+(\d+))?:\s*([A-Z0-9, ]+?)\s*\*/")


def expectations(path: str) -> set[tuple[int, str]]:
    out: set[tuple[int, str]] = set()
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            for m in _EXPECT.finditer(line):
                off = int(m.group(2) or 0)
                for rid in m.group(3).split(","):
                    out.add((i + off, rid.strip()))
    return out


def findings_for(rel: str, rule_id: str, cache: str) -> set[tuple[int, str]]:
    res = run([rel], root=FIXTURES, cache_dir=cache, jobs=1, progress=False)
    with open(os.path.join(FIXTURES, rel), encoding="utf-8") as fh:
        errors_expected = "fixture: parse errors expected" in fh.read()
    assert bool(res.facts.tus[0].errors) == errors_expected, res.facts.tus[0].diagnostics
    rules = all_rules()
    selected = list(rules.values()) if rule_id == "QM100" else [rules[rule_id]]
    result = analyze(res.facts, load_model(), root=FIXTURES, rules=selected, debug=True)
    for f in result.findings:
        assert f.message and f.fix, f
    return {(f.line, f.rule) for f in result.findings if f.file == rel}


@pytest.mark.parametrize("rule_id", RULES)
@pytest.mark.parametrize("which", ["bad", "good"])
def test_fixture(rule_id: str, which: str, tmp_path: object) -> None:
    rel = f"rules/{rule_id}/{which}.c"
    want = expectations(os.path.join(FIXTURES, rel))
    if which == "bad":
        assert want, f"{rel} has no expectations"
    else:
        assert not want
    got = findings_for(rel, rule_id, str(tmp_path))
    assert got - want == set(), f"unexpected findings in {rel}: {sorted(got - want)}"
    assert want - got == set(), f"expected findings missing in {rel}: {sorted(want - got)}"


@pytest.mark.parametrize("rule_id", RULES)
def test_docs(rule_id: str) -> None:
    rule = all_rules()[rule_id]
    for sec in SECTIONS:
        assert rule.section(sec), f"{rule_id}: empty section {sec}"
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", rule.name)
    assert rule.severity in ("error", "warning", "note")
    assert rule.status in ("stable", "preview")
