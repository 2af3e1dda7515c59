"""The threadify-shaped fixture series: at every step, the findings are exactly
the planted mistakes marked `/* expect: QMnnn */` in that step's tree, and the
corrected final step is silent."""

from __future__ import annotations

import os
import subprocess

import pytest

from reviewer.analysis.engine import analyze
from reviewer.extract.runner import run
from reviewer.model import load_model
from reviewer.vcs.series import build_series_repo, series_steps

from .test_rules import expectations

STEPS = [os.path.basename(s) for s in series_steps("threadify")]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    d = str(tmp_path_factory.mktemp("series") / "repo")
    return d, build_series_repo(d)


@pytest.mark.parametrize("step", range(len(STEPS)), ids=STEPS)
def test_step(step: int, repo: tuple[str, list[str]], tmp_path: object) -> None:
    path, shas = repo
    subprocess.run(["git", "-C", path, "checkout", "-q", "--detach", shas[step]], check=True)
    want: set[tuple[str, int, str]] = set()
    for d, _, files in os.walk(path):
        if ".git" in d:
            continue
        for f in files:
            if f.endswith((".c", ".h")):
                rel = os.path.relpath(os.path.join(d, f), path)
                want |= {(rel, line, rule) for line, rule in expectations(os.path.join(d, f))}
    res = run(["migration", "hw"], root=path, cache_dir=str(tmp_path), jobs=1, progress=False)
    assert all(tu.errors == 0 for tu in res.facts.tus), [
        (tu.file, tu.diagnostics) for tu in res.facts.tus if tu.errors]
    result = analyze(res.facts, load_model(), root=path, debug=True)
    got = {(f.file, f.line, f.rule) for f in result.findings}
    assert got - want == set(), f"unexpected at {STEPS[step]}: {sorted(got - want)}"
    assert want - got == set(), f"missing at {STEPS[step]}: {sorted(want - got)}"
    if step == len(STEPS) - 1:
        assert not got
