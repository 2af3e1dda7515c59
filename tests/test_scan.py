"""reviewer scan on a repository built from the fixture series: attribution of
findings to commits, context and signature changes, report formats, and the
promise that the user's repository is never changed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

from reviewer.model import load_model
from reviewer.report.sarif import sarif_document
from reviewer.report.scan import scan_document
from reviewer.scan import scan
from reviewer.vcs.series import IDENTITY, build_series_repo

from .conftest import sarif_schema
from .test_cli import _one_line_error, run_cli


def repo_state(path: str) -> dict[str, str]:
    """Everything of a repository a scan must not touch, hashed."""
    out: dict[str, str] = {}
    for d, dirs, files in os.walk(path):
        dirs[:] = [x for x in dirs if x != "objects"]
        for f in files:
            full = os.path.join(d, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = hashlib.sha256(fh.read()).hexdigest()
    out["<stash>"] = subprocess.run(["git", "-C", path, "stash", "list"], capture_output=True,
                                    text=True, check=True).stdout
    out["<refs>"] = subprocess.run(["git", "-C", path, "for-each-ref"], capture_output=True,
                                   text=True, check=True).stdout
    return out


def git(path: str, *args: str) -> str:
    env = {**os.environ, **IDENTITY, "HOME": path}
    return subprocess.run(["git", "-C", path, *args], capture_output=True, text=True,
                          check=True, env=env).stdout.strip()


def committed_repo(d: str, files: dict[str, str]) -> str:
    """A repository at d whose one commit holds these files; its SHA."""
    for rel, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        with open(os.path.join(d, rel), "w") as fh:
            fh.write(text)
    git(d, "init", "-q")
    git(d, "add", "-A")
    git(d, "commit", "-qm", "base")
    return git(d, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    d = str(tmp_path_factory.mktemp("scan") / "repo")
    shas = build_series_repo(d)
    # A dirty work tree, a staged change and a stash: all must survive a scan.
    with open(os.path.join(d, "migration", "savevm.c"), "a") as fh:
        fh.write("\n/* uncommitted */\n")
    git(d, "stash")
    with open(os.path.join(d, "hw", "dev.c"), "a") as fh:
        fh.write("\n/* staged */\n")
    git(d, "add", "hw/dev.c")
    with open(os.path.join(d, "migration", "migration.c"), "a") as fh:
        fh.write("\n/* dirty */\n")
    return d, shas


@pytest.fixture(scope="module")
def report(series: tuple[str, list[str]], tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, object]:
    path, shas = series
    before = repo_state(path)
    cache = str(tmp_path_factory.mktemp("cache"))
    rep = scan(path, f"{shas[0]}..{shas[-1]}", paths=["migration", "hw"], cache_dir=cache,
               model=load_model(), progress=False)
    assert repo_state(path) == before
    assert [x for x in os.listdir(os.path.join(cache, "scan")) if not x.endswith(".lock")] == []
    return {"report": rep, "doc": scan_document(rep), "shas": shas}


def _by_status(doc: dict, idx: int, status: str) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(f["rule"], f["file"]) for f in doc["patches"][idx]["findings"]
            if f["status"] == status}


def test_attribution(report: dict[str, object]) -> None:
    doc = report["doc"]
    shas = report["shas"]
    assert [p["commit"] for p in doc["patches"]] == shas[1:]  # type: ignore[index]
    assert _by_status(doc, 0, "new") == {("QM005", "migration/savevm.c")}
    assert _by_status(doc, 1, "new") == {
        ("QM002", "migration/migration.c"), ("QM003", "migration/migration.c"),
        ("QM004", "migration/savevm.c"), ("QM007", "migration/migration.c"),
        ("QM008", "migration/migration.c"), ("QM009", "migration/migration.c"),
        ("QM010", "migration/migration.c"),
    }
    assert _by_status(doc, 2, "new") == set()
    assert _by_status(doc, 2, "fixed") == _by_status(doc, 1, "new") | _by_status(doc, 0, "new")
    assert doc["remaining"] == []  # type: ignore[index]
    for p in doc["patches"]:  # type: ignore[index]
        for f in p["findings"]:
            for key in ("rule", "name", "status", "commit", "function", "file", "line",
                        "message", "chain"):
                assert key in f
            assert f["commit"] == p["commit"]


def test_context_and_signature_changes(report: dict[str, object]) -> None:
    doc = report["doc"]
    p1, p2 = doc["patches"][0], doc["patches"][1]  # type: ignore[index]
    sigs = {s["function"]: s for s in p1["signature_changes"]}
    assert sigs["qemu_loadvm_state"]["after"] == ["f", "bql_held", "errp"]
    assert all(site["updated"] for site in sigs["qemu_loadvm_state"]["sites"])
    changed = {c["function"]: c for c in p2["context_changes"]}
    assert "thread mig/dst/main (BQL not held)" in changed["qemu_loadvm_state_main"]["added"]
    assert changed["qemu_loadvm_state_main"]["touched"]
    assert not p1["context_changes"] or all(
        "thread" not in a for c in p1["context_changes"] for a in c["added"])


def test_sarif_valid_and_read_by_sarif_tools(report: dict[str, object], tmp_path: object
                                             ) -> None:
    doc = sarif_document(report["report"])  # type: ignore[arg-type]
    jsonschema.validate(doc, sarif_schema())
    results = doc["runs"][0]["results"]
    assert {r["baselineState"] for r in results} == {"new", "absent"}
    assert all(r["partialFingerprints"]["reviewer/v1"] for r in results)
    out = os.path.join(str(tmp_path), "scan.sarif")
    with open(out, "w") as fh:
        json.dump(doc, fh)
    r = subprocess.run([sys.executable, "-m", "sarif", "summary", out], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "error" in r.stdout.lower()


def test_formats_from_the_cli(series: tuple[str, list[str]], tmp_path: object) -> None:
    path, shas = series
    cache = os.path.join(str(tmp_path), "cache")
    rng = f"{shas[0]}..{shas[-1]}"
    common = ["scan", rng, "--repo", path, "--paths", "migration", "--paths", "hw",
              "--cache-dir", cache]
    r = run_cli(*common, "--format", "json", "--fail-on", "new")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == 1 and doc["totals"]["new"] == 8
    html = os.path.join(str(tmp_path), "r.html")
    r = run_cli(*common, "--format", "html", "--output", html)
    assert r.returncode == 0, r.stderr
    with open(html) as fh:
        text = fh.read()
    assert "<script" not in text and "QM007" in text and 'line hit' in text
    r = run_cli(*common, "--format", "markdown")
    assert "| 2 |" in r.stdout and "QM003" in r.stdout
    base = os.path.join(str(tmp_path), "baseline.json")
    mid = ["--repo", path, "--paths", "migration", "--paths", "hw", "--cache-dir", cache,
           "-f", "json"]
    run_cli("scan", f"{shas[0]}..{shas[2]}", *mid, "--write-baseline", base)
    r = run_cli("scan", f"{shas[1]}..{shas[2]}", *mid, "--baseline", base)
    hidden = json.loads(r.stdout)
    assert hidden["totals"]["new"] == 0 and hidden["hidden_by_baseline"] == 7
    # A second run parses nothing it already parsed.
    r = run_cli(*common, "--format", "json")
    assert all(p["parsed_tus"] == 0 for p in json.loads(r.stdout)["patches"])


def test_bad_input(series: tuple[str, list[str]], tmp_path: object) -> None:
    path, shas = series
    assert "not a git repository" in _one_line_error(run_cli("scan", "--repo", str(tmp_path)))
    assert "unknown revision" in _one_line_error(run_cli("scan", "nope..HEAD", "--repo", path))
    assert "empty" in _one_line_error(run_cli("scan", f"{shas[-1]}..{shas[0]}", "--repo", path))


def test_merges_renames_deletions_binary_and_latin1(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "repo")
    shas = build_series_repo(d)
    git(d, "checkout", "-q", "-b", "side", shas[1])
    git(d, "mv", "hw/dev.c", "hw/device.c")
    with open(os.path.join(d, "hw", "blob.bin"), "wb") as fh:
        fh.write(bytes(range(256)))
    git(d, "add", "-A")
    git(d, "-c", "i18n.commitEncoding=latin1", "commit", "-q", "-m", "hw: renam\xe9 dev")
    git(d, "checkout", "-q", "master")
    git(d, "rm", "-q", "migration/trace.h")
    git(d, "commit", "-q", "-m", "drop trace.h")
    git(d, "merge", "-q", "--no-edit", "side")
    before = repo_state(d)
    r = run_cli("scan", f"{shas[0]}..HEAD", "--repo", d, "--paths", "migration", "--paths", "hw",
                "--cache-dir", os.path.join(str(tmp_path), "c"), "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    skipped = [p for p in doc["patches"] if p["skipped"]]
    assert len(skipped) == 1 and "merge" in skipped[0]["skipped"]
    assert any("renam" in p["subject"] for p in doc["patches"])
    assert repo_state(d) == before


def test_analyses_in_children_give_the_serial_report(
    series: tuple[str, list[str]], report: dict[str, object], tmp_path: object
) -> None:
    """--jobs 2 analyses each version in a forked child while the next one is
    parsed; --jobs 1 does everything in order here: the same report."""
    path, shas = series
    serial = scan(path, f"{shas[0]}..{shas[-1]}", paths=["migration", "hw"], jobs=1,
                  cache_dir=os.path.join(str(tmp_path), "1"), model=load_model(),
                  progress=False)
    piped = scan(path, f"{shas[0]}..{shas[-1]}", paths=["migration", "hw"], jobs=2,
                 cache_dir=os.path.join(str(tmp_path), "2"), model=load_model(),
                 progress=False)
    assert scan_document(serial) == scan_document(piped) == report["doc"]


def test_the_last_version_analysed_beside_a_busy_worker(
    series: tuple[str, list[str]], report: dict[str, object], tmp_path: object,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing left to parse and the worker still on an earlier version,
    the scan analyses the last version itself, from scratch: the same report."""
    import reviewer.scan as scan_mod

    here: list[str] = []
    real = scan_mod._Analyst.__call__

    def spy(self: object, job: object) -> object:
        here.append(getattr(job, "sha", ""))
        return real(self, job)  # type: ignore[arg-type]

    monkeypatch.setattr(scan_mod._Analyses, "_behind", lambda self: True)
    monkeypatch.setattr(scan_mod._Analyst, "__call__", spy)
    path, shas = series
    got = scan(path, f"{shas[0]}..{shas[-1]}", paths=["migration", "hw"], jobs=2,
               cache_dir=os.path.join(str(tmp_path), "c"), model=load_model(), progress=False)
    assert here == [shas[-1]]  # in this process; the worker's calls are in another
    assert scan_document(got) == report["doc"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_reused_flows_give_a_fresh_analysis(
    series: tuple[str, list[str]], tmp_path: object, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """Each version reuses the flows of the one before where they still hold
    (reviewer.analysis.incremental): every version's analysis, all functions'
    contexts and chains included, is the one a fresh analysis gives."""
    from reviewer.analysis import incremental

    path, shas = series
    reused: list[int] = []

    original = incremental.reusable

    def counting(*args: object) -> object:
        got = original(*args)  # type: ignore[arg-type]
        reused.append(len(got[0]))
        return got

    monkeypatch.setattr(incremental, "reusable", counting)
    versions: dict[str, dict[str, object]] = {}
    for memo in ("0", "1"):
        monkeypatch.setenv("REVIEWER_FLOW_MEMO", memo)
        cache = os.path.join(str(tmp_path), memo)
        scan(path, f"{shas[0]}..{shas[-1]}", paths=["migration", "hw"], jobs=jobs,
             cache_dir=cache, model=load_model(), progress=False)
        d = os.path.join(cache, "versions-v2")
        versions[memo] = {}
        for f in os.listdir(d):
            with open(os.path.join(d, f), "rb") as fh:
                versions[memo][f] = json.loads(fh.read().split(b"\n", 1)[1])
    assert len(versions["1"]) == len(shas) and versions["0"] == versions["1"]
    if jobs == 1:  # counted here; in children the counts stay there
        assert reused and max(reused) > 0


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_patch_that_changes_no_facts_is_not_analysed_again(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """A documentation-only patch: no TU's facts and no file the analysis
    reads change, so its version is the one before under its own SHA."""
    import reviewer.scan

    d = os.path.join(str(tmp_path), "repo")
    shas = build_series_repo(d)
    os.makedirs(os.path.join(d, "docs"), exist_ok=True)
    with open(os.path.join(d, "docs", "notes.rst"), "w") as fh:
        fh.write("Threadify notes\n")
    git(d, "add", "docs/notes.rst")
    git(d, "commit", "-q", "-m", "docs: notes")
    tip = git(d, "rev-parse", "HEAD")
    analysed: list[str] = []
    original = reviewer.scan._analysed

    def counting(job: object, **kwargs: object) -> object:
        analysed.append(job.sha)  # type: ignore[attr-defined]
        return original(job, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reviewer.scan, "_analysed", counting)
    cache = os.path.join(str(tmp_path), "cache")
    report = scan(d, f"{shas[-2]}..{tip}", paths=["migration", "hw"], jobs=jobs,
                  cache_dir=cache, model=load_model(), progress=False)
    docs = report.patches[-1]
    assert docs.commit.sha == tip and docs.parsed == 0
    assert not docs.new and not docs.fixed and not docs.context_changes
    if jobs == 1:  # counted here; in the worker the count stays there
        assert tip not in analysed and len(analysed) == 2
    fresh = scan(d, f"{shas[-2]}..{tip}", paths=["migration", "hw"], jobs=1,
                 cache_dir=os.path.join(str(tmp_path), "fresh"), model=load_model(),
                 progress=False)
    assert report.remaining == fresh.remaining


def test_a_series_rewritten_with_the_same_trees_is_not_analysed_again(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trailers added to every commit (b4 trailers -u): new commits, the same
    trees, so the versions cached by the first scan serve the second one."""
    import reviewer.scan

    d = os.path.join(str(tmp_path), "repo")
    shas = build_series_repo(d)
    cache = os.path.join(str(tmp_path), "cache")
    first = scan(d, f"{shas[0]}..{shas[-1]}", paths=["migration", "hw"], jobs=2,
                 cache_dir=cache, model=load_model(), progress=False)
    parent = shas[0]
    for sha in shas[1:]:
        msg = git(d, "log", "-1", "--format=%B", sha)
        msg += "\n\nReviewed-by: A Reviewer <r@example.org>\n"
        parent = git(d, "commit-tree", f"{sha}^{{tree}}", "-p", parent, "-m", msg)
    assert parent != shas[-1]
    analysed: list[object] = []
    monkeypatch.setattr(reviewer.scan, "_analysed", lambda *a, **k: analysed.append(a))
    monkeypatch.setattr(reviewer.scan.Repository, "archive_to",
                        lambda *a, **k: analysed.append(a))
    again = scan(d, f"{shas[0]}..{parent}", paths=["migration", "hw"], jobs=1,
                 cache_dir=cache, model=load_model(), progress=False)
    assert analysed == []  # nothing materialised, nothing analysed
    assert [p.commit.sha for p in again.patches] == git(
        d, "rev-list", "--reverse", f"{shas[0]}..{parent}").split()
    assert [(p.new, p.fixed, p.context_changes) for p in again.patches] == [
        (p.new, p.fixed, p.context_changes) for p in first.patches]
    assert again.remaining == first.remaining


def test_an_analysis_that_fails_in_a_child_fails_the_scan(
    series: tuple[str, list[str]], tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reviewer.scan

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("broken analysis")

    path, shas = series
    before = repo_state(path)
    monkeypatch.setattr(reviewer.scan, "_analysed", broken)
    with pytest.raises(ValueError, match="broken analysis"):
        scan(path, f"{shas[0]}..{shas[-1]}", paths=["migration", "hw"], jobs=2,
             cache_dir=str(tmp_path), model=load_model(), progress=False)
    assert repo_state(path) == before
    assert [x for x in os.listdir(os.path.join(str(tmp_path), "scan"))
            if not x.endswith(".lock")] == []


def test_a_dead_analysis_worker_fails_the_scan(
    series: tuple[str, list[str]], tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed (the OOM killer, a stray kill -9): the scan says so, instead of
    taking the pipe it can no longer write for a closed stdout."""
    import reviewer.scan

    path, shas = series
    before = repo_state(path)
    monkeypatch.setattr(reviewer.scan, "_serve",
                        lambda *a: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(RuntimeError, match=r"analysis worker ended \(killed by signal 9\)"):
        scan(path, f"{shas[0]}..{shas[-1]}", paths=["migration", "hw"], jobs=2,
             cache_dir=str(tmp_path), model=load_model(), progress=False)
    assert repo_state(path) == before
    assert [x for x in os.listdir(os.path.join(str(tmp_path), "scan"))
            if not x.endswith(".lock")] == []


def test_the_worker_never_waits_for_the_scan_to_read(tmp_path: object) -> None:
    """More versions than the notice pipe holds (~12,000 unread): the scan
    takes the worker's notices as it sends jobs, so neither side blocks."""
    from reviewer.scan import Version, _Analyses, _Job, _Snapshot

    def work(job: _Job, **kwargs: object) -> tuple[Version, None]:
        return Version(job.sha, [], {}, {}, {}, {}, {}, {}, [], [], ""), None

    analyses = _Analyses(in_worker=True)
    n = 30_000
    spool = os.path.join(str(tmp_path), "spool")

    def hung(*args: object) -> None:
        raise TimeoutError("the scan and its analysis worker wait for each other")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        for i in range(n):
            analyses.start(_Job(f"{i:040x}", [], "nobuild", [], 0, _Snapshot()), work, spool)
        assert analyses.join(f"{n - 1:040x}").sha == f"{n - 1:040x}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        analyses.close()
    assert not os.path.exists(spool) or os.listdir(spool) == []


def test_a_killed_scans_leftovers_are_removed_by_the_next(
    series: tuple[str, list[str]], tmp_path: object
) -> None:
    """SIGKILL or SIGTERM leave the scratch tree and the analysis spool; the
    next scan of the repository removes both, under its lock."""
    path, shas = series
    cache = str(tmp_path)
    scan(path, f"{shas[0]}..{shas[1]}", paths=["migration", "hw"], jobs=2, cache_dir=cache,
         model=load_model(), progress=False)
    scratch = os.path.join(cache, "scan")
    (lock,) = os.listdir(scratch)
    key = lock[: -len(".lock")]
    for d in (key, key + ".analyses"):
        os.makedirs(os.path.join(scratch, d, "stale"))
    scan(path, f"{shas[0]}..{shas[-1]}", paths=["migration", "hw"], jobs=2, cache_dir=cache,
         model=load_model(), progress=False)
    assert os.listdir(scratch) == [lock]


def test_a_version_with_a_tu_that_failed_is_not_cached(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TU over the time limit is parsed again next time; the version it
    made is analysed again too, instead of being read back from the cache."""
    d = os.path.join(str(tmp_path), "repo")
    shas = build_series_repo(d)
    cache = os.path.join(str(tmp_path), "cache")
    rng = f"{shas[-2]}..{shas[-1]}"
    monkeypatch.setenv("REVIEWER_TU_TIMEOUT", "0.001")
    starved = scan(d, rng, paths=["migration", "hw"], jobs=2, cache_dir=cache,
                   model=load_model(), progress=False)
    assert any("REVIEWER_TU_TIMEOUT" in p for p in starved.problems)
    monkeypatch.delenv("REVIEWER_TU_TIMEOUT")
    again = scan(d, rng, paths=["migration", "hw"], jobs=2, cache_dir=cache,
                 model=load_model(), progress=False)
    fresh = scan(d, rng, paths=["migration", "hw"], jobs=2,
                 cache_dir=os.path.join(str(tmp_path), "fresh"), model=load_model(),
                 progress=False)
    assert not any("REVIEWER_TU_TIMEOUT" in p for p in again.problems)
    def found(r: object) -> list[object]:
        return [(p.new, p.fixed) for p in r.patches]  # type: ignore[attr-defined]

    assert found(again) == found(fresh) and fresh.patches[-1].fixed
    assert found(starved) != found(fresh)


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0])
def test_interrupted_scan_leaves_nothing(series: tuple[str, list[str]], tmp_path: object,
                                         delay: float, jobs: str) -> None:
    path, shas = series
    before = repo_state(path)
    cache = os.path.join(str(tmp_path), "cache")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reviewer.cli", "scan", f"{shas[0]}..{shas[-1]}", "--repo", path,
         "--paths", "migration", "--paths", "hw", "--cache-dir", cache, "--jobs", jobs],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert repo_state(path) == before
    scratch = os.path.join(cache, "scan")
    if os.path.isdir(scratch):
        assert [x for x in os.listdir(scratch) if not x.endswith(".lock")] == []


def test_scratch_trees_leave_out_unused_directories() -> None:
    """tests/, docs/, pc-bios/... are not materialised unless the scope or the
    series has something there."""
    from reviewer.scan import UNUSED_DIRS, unused_dirs

    assert unused_dirs(["migration", "include/migration"]) == UNUSED_DIRS
    kept = unused_dirs(["migration", "tests/unit/test-vmstate.c", "docs"])
    assert "tests" not in kept and "docs" not in kept and "pc-bios" in kept


def test_a_header_renamed_away_is_not_read_from_memory(tmp_path: object,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan keeps the files' hashes from one version to the next: a header
    renamed away in a step is forgotten, so the TU that included it finds the
    next header of that name instead (tests/test_delta.py's review series)."""

    d = os.path.join(str(tmp_path), "repo")
    base = committed_repo(d, {
        "hw/x.h": "int coroutine_fn xval(void);\n",
        "x.h": "int xval(void);\n",  # next in line: -iquote <root>
        "hw/user.c": '#include "x.h"\nint user(void)\n{\n    return xval();\n}\n'})
    git(d, "mv", "hw/x.h", "hw/z.h")
    git(d, "commit", "-qm", "rename")
    scanned, fresh = scanned_and_fresh(d, base, tmp_path, monkeypatch)
    assert scanned == fresh


def scanned_and_fresh(d: str, base: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
                      ) -> tuple[list[object], list[object]]:
    """The facts `reviewer scan base..HEAD` had for the last version, and
    those a parse of the tree with no cache gives."""
    import reviewer.scan
    from reviewer.extract.runner import run

    seen: list[object] = []
    real = reviewer.scan._extract

    def spy(*a: object, **kw: object) -> object:
        seen.append(real(*a, **kw))  # type: ignore[arg-type]
        return seen[-1]

    monkeypatch.setattr(reviewer.scan, "_extract", spy)
    scan(d, f"{base}..HEAD", paths=["hw"], jobs=1, cache_dir=os.path.join(str(tmp_path), "c"),
         model=load_model(), progress=False)
    fresh = run(["hw"], root=d, cache_dir=os.path.join(str(tmp_path), "f"), jobs=1,
                progress=False, use_cache=False)
    return list(seen[-1].facts.tus), list(fresh.facts.tus)  # type: ignore[attr-defined]
