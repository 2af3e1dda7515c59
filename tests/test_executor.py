"""Extraction on a Dask cluster gives exactly the local run's documents, and
shares its cache.

The tests start their own LocalCluster (two single-threaded worker processes
on the loopback interface) and close it when the module is done; no network
and no QEMU tree are needed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from reviewer.analysis.engine import analyze
from reviewer.errors import UserError
from reviewer.extract.runner import Executor, RunResult, run
from reviewer.model import load_model
from reviewer.report.facts import facts_document
from reviewer.report.findings import analysis_document

from .conftest import FIXTURES

distributed = pytest.importorskip("distributed")

THREADIFY = os.path.join(FIXTURES, "series", "threadify", "0-base")
# (root, paths): the extractor's own fixtures and every rule's, and the
# QEMU-like tree the threadify series applies to.
TREES = {
    "extract+rules": (FIXTURES, ["extract", "rules"]),
    "threadify-base": (THREADIFY, ["migration"]),
}
# Fields about the run rather than its results.
RUN_FIELDS = ("parsed", "cached")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
    )
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


def document(result: RunResult) -> str:
    """The facts document (with bodies) as `reviewer facts -f json` writes it,
    less the run counters."""
    doc: dict[str, Any] = facts_document(result, load_model(), with_body=True)
    for k in RUN_FIELDS:
        doc.pop(k)
    return json.dumps(doc, separators=(",", ":"))


def extract(tree: str, cache: str, executor: Executor | None = None,
            unsaved: dict[str, bytes] | None = None) -> RunResult:
    root, paths = TREES[tree]
    return run(paths, root=root, cache_dir=cache, jobs=2, progress=False, executor=executor,
               unsaved=unsaved)


@pytest.mark.parametrize("tree", sorted(TREES))
def test_cluster_matches_local(tree: str, scheduler: str, tmp_path: Any) -> None:
    local = extract(tree, str(tmp_path / "local"))
    remote = extract(tree, str(tmp_path / "dask"), Executor("dask", scheduler))
    assert remote.parsed == local.parsed == len(local.facts.tus) > 0
    assert document(remote) == document(local)
    # Analysis documents too: the facts are equal as objects, not only as JSON.
    model = load_model()
    root = TREES[tree][0]
    a_local = analysis_document(local, analyze(local.facts, model, root=root))
    a_remote = analysis_document(remote, analyze(remote.facts, model, root=root))
    assert json.dumps(a_remote, sort_keys=True) == json.dumps(a_local, sort_keys=True)


def test_cluster_fills_the_local_cache(scheduler: str, tmp_path: Any) -> None:
    """The driver writes what the workers send back; a local run then parses
    nothing and a cluster run reads the local run's entries, and all agree."""
    cache = str(tmp_path / "cache")
    first = extract("threadify-base", cache, Executor("dask", scheduler))
    again = extract("threadify-base", cache)
    assert (again.parsed, again.cached) == (0, len(first.facts.tus))
    assert document(again) == document(first)

    shutil.rmtree(cache)
    local = extract("threadify-base", cache)
    remote = extract("threadify-base", cache, Executor("dask", scheduler))
    assert (remote.parsed, remote.cached) == (0, len(local.facts.tus))
    assert document(remote) == document(local)


def test_unsaved_sources_travel_with_the_tasks(scheduler: str, tmp_path: Any) -> None:
    path = os.path.join(THREADIFY, "migration", "savevm.c")
    with open(path, "rb") as fh:
        text = fh.read()
    edited = text + b"\nint reviewer_unsaved_probe(void)\n{\n    return 0;\n}\n"
    unsaved = {path: edited}
    local = extract("threadify-base", str(tmp_path / "local"), unsaved=unsaved)
    remote = extract("threadify-base", str(tmp_path / "dask"), Executor("dask", scheduler),
                     unsaved=unsaved)
    names = {f.name for tu in remote.facts.tus for f in tu.functions}
    assert "reviewer_unsaved_probe" in names
    assert document(remote) == document(local)


def test_own_local_cluster(tmp_path: Any) -> None:
    """Without --scheduler, the run starts (and stops) a cluster of --jobs workers."""
    local = run(["extract"], root=FIXTURES, cache_dir=str(tmp_path / "a"), jobs=2,
                progress=False)
    remote = run(["extract"], root=FIXTURES, cache_dir=str(tmp_path / "b"), jobs=2,
                 progress=False, executor=Executor("dask"))
    assert document(remote) == document(local)


def test_bad_executor_options() -> None:
    with pytest.raises(UserError, match="--scheduler needs --executor dask"):
        Executor("local", "tcp://127.0.0.1:8786")
    with pytest.raises(UserError, match="unknown"):
        Executor("ray")


def test_cli_facts_json(scheduler: str, tmp_path: Any) -> None:
    """`reviewer facts -f json` through the options, as a person runs it."""

    def facts(*opts: str) -> dict[str, Any]:
        r = subprocess.run(
            [sys.executable, "-m", "reviewer.cli", "facts", "migration", "--root", THREADIFY,
             "-f", "json", "-j", "2", *opts],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert r.returncode == 0, r.stderr
        doc: dict[str, Any] = json.loads(r.stdout)
        return doc

    local = facts("--cache-dir", str(tmp_path / "local"))
    remote = facts("--cache-dir", str(tmp_path / "dask"), "--executor", "dask",
                   "--scheduler", scheduler)
    assert remote == local  # same counters too: both parsed every TU
    assert local["parsed"] == len(local["tus"]) > 0


def test_without_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Without dask installed, --executor dask is a usage error naming the extra."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes the import fail
    with pytest.raises(UserError, match=r"qemu-reviewer\[distributed\]"):
        run(["extract/bql.c"], root=FIXTURES, cache_dir=str(tmp_path), progress=False,
            executor=Executor("dask"))


def test_limits_apply_on_the_cluster(scheduler: str, tmp_path: Any,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A TU over the time limit is skipped with the same notice either way: the
    tasks run the local path's bounded child, with the driver's limits."""
    monkeypatch.setenv("REVIEWER_TU_TIMEOUT", "0.001")
    local = extract("threadify-base", str(tmp_path / "local"))
    remote = extract("threadify-base", str(tmp_path / "dask"), Executor("dask", scheduler))
    assert all("REVIEWER_TU_TIMEOUT" in (tu.failed or "") for tu in local.facts.tus)
    assert remote.problems == local.problems
    assert document(remote) == document(local)


def test_audit_on_the_cluster_matches_local(scheduler: str, tmp_path: Any) -> None:
    """`reviewer audit` over the fixture devices: the same verdicts either way."""

    def audit(*opts: str) -> dict[str, Any]:
        r = subprocess.run(
            [sys.executable, "-m", "reviewer.cli", "audit", "audit", "--root", FIXTURES,
             "--entry", "qemu_loadvm_state_main", "-f", "json", *opts],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert r.returncode == 0, r.stderr
        doc: dict[str, Any] = json.loads(r.stdout)
        return doc

    local = audit("--cache-dir", str(tmp_path / "local"))
    remote = audit("--cache-dir", str(tmp_path / "dask"), "--executor", "dask",
                   "--scheduler", scheduler)
    assert remote == local and local["counts"]["problems"] == 2
