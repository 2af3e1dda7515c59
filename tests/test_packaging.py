"""Templates and fixtures must reach a non-editable install (the wheel)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile

from .conftest import ROOT


def test_wheel_carries_templates_fixtures_and_model(tmp_path: object) -> None:
    out = str(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    (whl,) = glob.glob(f"{out}/*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    assert "reviewer/templates/facts.txt.j2" in names
    assert "reviewer/model/api.toml" in names
    assert "reviewer/fixtures/include/qemu-stubs.h" in names
    assert "reviewer/fixtures/series/threadify/0-base/migration/savevm.c" in names
    assert "reviewer/fixtures/series/threadify/0-base/COMMIT_MSG" in names
    assert "reviewer/templates/rules/QM001.j2" in names
    # Every package of the source tree ships (a missing one only shows in a
    # non-editable install, never in the tests that import the checkout).
    for d, _, files in os.walk(os.path.join(ROOT, "reviewer")):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), ROOT)
                assert rel in names, f"{rel} is not in the wheel: list its package in pyproject"
