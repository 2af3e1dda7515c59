"""`reviewer demo`: a small QEMU-like repository with a threadify-style series
(built from packaged fixtures), scanned patch by patch."""

from __future__ import annotations

import os
import shutil
import tempfile

from reviewer.model import load_model
from reviewer.report.render import render
from reviewer.report.scan import scan_document
from reviewer.scan import scan
from reviewer.vcs.series import build_series_repo


def run_demo(directory: str | None, keep: bool = False, jobs: int | None = None) -> str:
    made = directory is None
    dest = tempfile.mkdtemp(prefix="reviewer-demo-") if made else os.path.abspath(directory or "")
    cache = tempfile.mkdtemp(prefix="reviewer-demo-cache-")
    try:
        shas = build_series_repo(dest)
        rng = f"{shas[0][:12]}..{shas[-1][:12]}"
        report = scan(dest, rng, paths=["migration", "hw"], jobs=jobs, cache_dir=cache,
                      model=load_model(), progress=False)
        doc = scan_document(report)
        return render("demo.txt.j2", repo=dest if (keep or not made) else "", doc=doc,
                      show_preexisting=False, max_contexts=10)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if made and not keep:
            shutil.rmtree(dest, ignore_errors=True)
