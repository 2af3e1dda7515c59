"""Golden facts for every extractor fixture (fixtures/extract/*.c).

Refresh with `pytest tests/test_extract_golden.py --update-golden` after a
deliberate change, and read the diff before committing it.
"""

from __future__ import annotations

import json
import os

import pytest

from reviewer.extract.runner import run
from reviewer.model import load_model
from reviewer.report.facts import facts_document

from .conftest import FIXTURES, GOLDEN

CASES = sorted(f[:-2] for f in os.listdir(os.path.join(FIXTURES, "extract")) if f.endswith(".c"))


def _doc(name: str, cache: str) -> dict[str, object]:
    result = run([f"extract/{name}.c"], root=FIXTURES, cache_dir=cache, jobs=1, progress=False)
    doc = facts_document(result, load_model(), with_body=True)
    (tu,) = doc["tus"]  # type: ignore[misc]
    # Diagnostics carry clang's wording, which moves between versions.
    tu["diagnostics"] = [{"severity": d["severity"], "line": d["line"]} for d in tu["diagnostics"]]
    return tu  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, tmp_path: object, update_golden: bool) -> None:
    got = _doc(name, str(tmp_path))
    path = os.path.join(GOLDEN, "extract", f"{name}.json")
    text = json.dumps(got, indent=1, sort_keys=True) + "\n"
    if update_golden or not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        if not update_golden:
            pytest.fail(f"{path} was missing and has been written; review and commit it")
        return
    with open(path, encoding="utf-8") as fh:
        want = fh.read()
    assert text == want, (
        f"facts of fixtures/extract/{name}.c changed; if intended, run "
        "`pytest tests/test_extract_golden.py --update-golden` and review the diff"
    )
