"""`reviewer demo`: a small QEMU-like repository with a threadify-style series,
reviewed end to end. Until `scan` exists it prints the facts of each patch."""

from __future__ import annotations

import os
import shutil
import tempfile

from reviewer.extract.runner import run
from reviewer.model import load_model
from reviewer.report.facts import facts_document
from reviewer.report.render import render
from reviewer.vcs.series import _git, build_series_repo


def run_demo(directory: str | None, keep: bool = False, jobs: int | None = None) -> str:
    made = directory is None
    dest = tempfile.mkdtemp(prefix="reviewer-demo-") if made else os.path.abspath(directory or "")
    try:
        shas = build_series_repo(dest)
        model = load_model()
        cache = os.path.join(dest, ".git", "reviewer-cache")
        docs = []
        for sha in shas:
            _git(dest, "checkout", "-q", "--detach", sha)
            subject = _git(dest, "log", "-1", "--format=%s", sha)
            result = run(["migration", "hw"], root=dest, cache_dir=cache, jobs=jobs,
                         progress=False)
            docs.append({"sha": sha, "subject": subject,
                         "doc": facts_document(result, model)})
        _git(dest, "checkout", "-q", "master")
        return render("demo.txt.j2", repo=dest if (keep or not made) else "", patches=docs)
    finally:
        if made and not keep:
            shutil.rmtree(dest, ignore_errors=True)
