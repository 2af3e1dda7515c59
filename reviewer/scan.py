"""`reviewer scan`: patch by patch, what each commit of a range introduced, fixed,
and moved to another context.

The tree before the range is materialised once in a scratch directory
(checkout-index through an index file of our own, outside the user's
repository); each commit then only rewrites the files it changed, and the fact
cache re-parses only the TUs whose content or headers changed. Each version of
the tree is analysed once (and cached by tree): the "after" of a patch is the
"before" of the next. With more than one job, the versions are analysed in
order by one worker process, on snapshots of the files they read, while the
next versions are materialised and parsed. Findings are matched across
versions by fingerprint (rule, function, symbols), never by line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import pickle
import select
import shutil
import signal
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from reviewer.errors import UserError
from reviewer.extract.cache import ContentHashes, Memo, default_cache_dir, gc_paused, write_atomic
from reviewer.extract.facts import FactSet, TUFacts
from reviewer.findings import Finding, Related
from reviewer.model import ApiModel
from reviewer.vcs.git import Change, CommitInfo, Repository, message_id_of

# The analysis and the extraction are imported where they are used: a re-scan
# whose versions are all cached needs neither (~0.1 s of imports).
if TYPE_CHECKING:
    from reviewer.analysis.bql import Flow
    from reviewer.analysis.incremental import FlowKey, FlowMemo, Shape
    from reviewer.analysis.program import Program
    from reviewer.extract.runner import RunResult

DEFAULT_PATHS = ("migration", "include/migration")


SEP = "\0"  # joins the parts of Version.chains and Version.calls entries


def call_site(entry: str) -> tuple[str, int, str, int]:
    """A Version.calls entry as (file, line, caller, number of arguments)."""
    file, line, caller, nargs = entry.split(SEP)
    return file, int(line), caller, int(nargs)


@dataclass
class Version:
    """What a scan needs of one version of the tree: plain data, cacheable."""

    sha: str
    findings_list: list[Finding]
    contexts: dict[str, dict[str, str]]  # function key -> {context: BQL text}
    # function key -> {context: chain}, the chain's names joined by SEP: the
    # cached versions decode about twice as fast as with a list per chain.
    chains: dict[str, dict[str, str]]
    params: dict[str, tuple[str, ...]]  # function key -> parameter names
    names: dict[str, tuple[str, str, int]]  # key -> (name, file, line)
    calls: dict[str, list[str]]  # callee name -> SEP-joined (file, line, caller, nargs)
    excerpts: dict[str, list[tuple[int, str]]]  # fingerprint -> source lines
    degraded: list[tuple[str, int]]  # (file, errors)
    problems: list[str]
    mode: str
    parsed: int = 0  # TUs parsed for this version in this run

    @property
    def findings(self) -> dict[str, Finding]:
        return {f.fingerprint: f for f in self.findings_list}

    def to_json(self) -> dict[str, Any]:
        # Not asdict(self): it deep-copies every nested dict and list of the
        # context tables (~0.3 s a version on migration/), which the JSON
        # encoder reads as they are.
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["findings_list"] = [asdict(f) for f in self.findings_list]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Version:
        findings = [Finding(**{**f, "chain": tuple(f["chain"]), "contexts": tuple(f["contexts"]),
                               "symbols": tuple(f["symbols"]),
                               "related": tuple(Related(**r) for r in f["related"])})
                    for f in d["findings_list"]]
        return cls(
            sha=d["sha"], findings_list=findings, contexts=d["contexts"], chains=d["chains"],
            params={k: tuple(v) for k, v in d["params"].items()},
            names={k: (v[0], v[1], v[2]) for k, v in d["names"].items()},
            calls=d["calls"],
            excerpts={k: [(n, t) for n, t in v] for k, v in d["excerpts"].items()},
            degraded=[(f, e) for f, e in d["degraded"]], problems=d["problems"],
            mode=d["mode"], parsed=0,
        )


@dataclass
class ContextChange:
    function: str
    file: str
    line: int
    added: list[str]
    removed: list[str]
    chains: dict[str, list[str]]
    touched: bool  # defined in a file the patch changes


@dataclass
class CallSite:
    file: str
    line: int
    caller: str
    updated: bool


@dataclass
class SignatureChange:
    function: str
    file: str
    line: int
    before: tuple[str, ...]
    after: tuple[str, ...]
    sites: list[CallSite]


@dataclass
class PatchReport:
    commit: CommitInfo
    files: list[str]
    new: list[Finding] = field(default_factory=list)
    fixed: list[Finding] = field(default_factory=list)
    preexisting: list[Finding] = field(default_factory=list)
    context_changes: list[ContextChange] = field(default_factory=list)
    signature_changes: list[SignatureChange] = field(default_factory=list)
    degraded: list[tuple[str, int]] = field(default_factory=list)
    excerpts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    message_id: str = ""  # the mail this patch came from, when known
    skipped: str = ""
    parsed: int = 0

    @property
    def worst(self) -> Finding | None:
        order = {"error": 0, "warning": 1, "note": 2}
        return min(self.new, key=lambda f: (order.get(f.severity, 3), f.rule, f.file, f.line),
                   default=None)


@dataclass
class ScanReport:
    repo: str
    range: str
    base: str
    mode: str
    patches: list[PatchReport]
    remaining: list[Finding]
    problems: list[str]
    hidden_by_baseline: int = 0
    tip: list[Finding] = field(default_factory=list)  # every finding at the tip


class _VersionCache:
    """Analysed versions by tree, scope and configuration: a re-scan of the
    same range, or of one rewritten without changing its trees, reads these
    and touches no tree at all. Entries carry a
    checksum line like the fact cache's; a bad one is ignored and rebuilt."""

    def __init__(self, cache_dir: str, config: str, enabled: bool = True) -> None:
        self.dir = os.path.join(cache_dir, "versions-v2")
        self.config = config
        self.enabled = enabled

    def key(self, tree: str, scope: list[str]) -> str:
        raw = "\0".join([self.config, tree, *sorted(scope)])
        return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()

    def get(self, key: str) -> Version | None:
        if not self.enabled:
            return None
        try:
            with open(os.path.join(self.dir, key + ".json"), "rb") as fh:
                checksum, _, text = fh.read().partition(b"\n")
            if hashlib.sha256(text).hexdigest().encode() != checksum:
                return None
            return Version.from_json(json.loads(text))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def put(self, key: str, v: Version) -> None:
        if not self.enabled:
            return
        text = json.dumps(v.to_json(), separators=(",", ":")).encode()
        try:
            os.makedirs(self.dir, exist_ok=True)
            write_atomic(os.path.join(self.dir, key + ".json"),
                         hashlib.sha256(text).hexdigest().encode() + b"\n" + text)
        except OSError:
            pass  # a cache that cannot be written only costs time


def _renamed(version: Version | None, sha: str) -> Version | None:
    """A cached version under the commit it is now read for."""
    return None if version is None else dataclasses.replace(version, sha=sha)


# Top-level directories of a QEMU tree that no TU outside them includes from
# (tests, documentation, firmware blobs, scripts): about a third of the tree's
# files, left out of scratch trees unless something in scope lives there.
UNUSED_DIRS = ("tests", "docs", "pc-bios", "roms", "python", "scripts")


def unused_dirs(paths: list[str]) -> tuple[str, ...]:
    """UNUSED_DIRS less those holding one of `paths` (scope, changed files)."""
    return tuple(d for d in UNUSED_DIRS
                 if not any(p == d or p.startswith(d + "/") for p in paths))


@functools.cache
def _code_digest() -> str:
    """A hash of reviewer's own code and templates: an analysed version cached
    by an older reviewer (a rule fixed since, a message reworded) is stale even
    when the version number and the model did not change."""
    from reviewer.resources import templates_dir

    h = hashlib.sha256()
    for top in (os.path.dirname(os.path.abspath(__file__)), templates_dir()):
        for d, dirs, files in sorted(os.walk(top)):
            dirs.sort()
            for f in sorted(files):
                if f.endswith((".py", ".j2", ".toml")):
                    with open(os.path.join(d, f), "rb") as fh:
                        h.update(f.encode() + b"\0" + fh.read())
    return h.hexdigest()


def _config_digest(model: ApiModel, build_dir: str | None, preview: bool,
                   resource_dir: str | None) -> str:
    from reviewer import __version__
    from reviewer.extract.facts import EXTRACTOR_VERSION

    parts = [__version__, EXTRACTOR_VERSION, _code_digest(), json.dumps(model.data, sort_keys=True),
             str(preview), resource_dir or ""]
    if build_dir:
        db = os.path.join(build_dir, "compile_commands.json")
        try:
            with open(db, "rb") as fh:
                parts.append(hashlib.sha256(fh.read()).hexdigest())
            parts.append(str(os.stat(os.path.join(build_dir, "config-host.h")).st_mtime_ns))
        except OSError:
            parts.append("no-db")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _materialise(repo: Repository, tree: str, prev: str, sha: str) -> list[Change]:
    changes = repo.changes(prev, sha)
    # Every removal before any write: git lists "hw/x" (a new file) before
    # "hw/x/y.c" (deleted with its directory).
    for ch in changes:
        if ch.status in ("D", "R") and _inside(tree, ch.old_path):
            old = os.path.join(tree, ch.old_path)
            if os.path.lexists(old):
                os.unlink(old)
            _prune(tree, os.path.dirname(old))
    for ch in changes:
        if ch.status == "D" or not _inside(tree, ch.path):
            continue
        data = repo.blob(sha, ch.path)
        dest = os.path.join(tree, ch.path)
        if data is None:  # a submodule or an unreadable entry: nothing to analyse
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        elif os.path.lexists(dest):
            os.unlink(dest)
        with open(dest, "wb") as fh:
            fh.write(data)
    return changes


def previous_of(repo: Repository, tree: str, prev: str, changes: list[Change]
                ) -> dict[str, bytes | None]:
    """What each changed file was at `prev` (None: it did not exist), keyed by
    its path in the tree: a TU whose cached facts came from that version may
    keep them (reviewer.extract.delta). A file renamed away is a change too:
    it is gone."""
    out = {os.path.join(tree, ch.path): None if ch.status in ("A", "R", "C") else (
               repo.blob(prev, ch.path))
           for ch in changes if _inside(tree, ch.path)}
    for ch in changes:
        if ch.status == "R" and ch.old_path and _inside(tree, ch.old_path):
            out.setdefault(os.path.join(tree, ch.old_path), repo.blob(prev, ch.old_path))
    return out


def _inside(tree: str, rel: str) -> bool:
    """A path from the repository stays inside the scratch tree (a crafted tree
    object can name "../x" or an absolute path; git itself refuses to check
    those out)."""
    parts = rel.replace("\\", "/").split("/")
    return bool(rel) and not os.path.isabs(rel) and ".." not in parts and ".git" not in parts


def _prune(tree: str, d: str) -> None:
    """Remove directories left empty by a deletion, as a checkout would."""
    while d != tree and (d + os.sep).startswith(tree + os.sep):
        try:
            os.rmdir(d)
        except OSError:
            return
        d = os.path.dirname(d)


@contextmanager
def _scratch(cache_dir: str, repo: Repository, key: str = "") -> Iterator[str]:
    """A stable per-repository scratch tree (stable paths keep the fact cache
    warm across scans), locked against a concurrent scan, emptied before and
    removed after, whatever happens."""
    where = os.path.abspath(repo.git_dir).encode("utf-8", "surrogateescape")
    key = key or hashlib.sha256(where).hexdigest()[:16]
    base = os.path.join(cache_dir, "scan")
    os.makedirs(base, exist_ok=True)
    tree = os.path.join(base, key)
    with open(tree + ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError("another reviewer scan of this repository is running; "
                            "wait for it or use another --cache-dir") from None
        # Left by a scan that was killed (SIGKILL, SIGTERM): removed now,
        # under the lock, as they are at the end.
        for d in (tree, _spool_of(tree)):
            shutil.rmtree(d, ignore_errors=True)
        os.makedirs(tree)
        try:
            yield tree
        finally:
            for d in (tree, _spool_of(tree)):
                shutil.rmtree(d, ignore_errors=True)


def _spool_of(tree: str) -> str:
    """Where the analysis worker of the scan using `tree` keeps its files."""
    return tree + ".analyses"


def _extract(tree: str, paths: list[str], build_dir: str | None, source_root: str | None,
             cache_dir: str, jobs: int | None, progress: bool | None,
             resource_dir: str | None, previous: dict[str, bytes | None] | None,
             memo: Memo, hashes: ContentHashes) -> RunResult:
    from reviewer.extract.flags import plan_flags
    from reviewer.extract.runner import run

    present = [p for p in paths if os.path.exists(os.path.join(tree, p))]
    plan = plan_flags(tree, build_dir, resource_dir, cache_dir, source_root=source_root)
    if previous is not None and plan.replaced:
        # The no-build stand-ins this version regenerated (a trace-events
        # change): their previous text lets the TUs that include them keep
        # their facts, as for the tree's own headers.
        previous = {**plan.replaced, **previous}
    return run(present, root=tree, plan=plan, cache_dir=cache_dir, jobs=jobs,
               progress=progress, previous=previous, memo=memo, hashes=hashes)


class _Snapshot(dict[str, bytes | None]):
    """Files as they were when a version's facts were ready. A path it does
    not hold reads as absent, never from the tree, which has moved on."""

    def __contains__(self, path: object) -> bool:
        return True

    def __missing__(self, path: str) -> None:
        return None


def _snapshot(tree: str, facts: FactSet) -> dict[str, bytes | None]:
    """Every file an analysis of this version reads, read now (None: absent):
    the TUs and the files their functions, calls and stores are in
    (suppression comments, excerpts) and each TU directory's trace-events.
    With it the analysis can run while the tree moves on to the next version."""
    from reviewer.analysis.engine import read_source

    rels = {tu.file for tu in facts.tus}
    for tu in facts.tus:
        rels.add(os.path.join(os.path.dirname(tu.file), "trace-events"))
        rels.update(fn.file for fn in tu.functions)
        rels.update(c.file for c in tu.calls)
        rels.update(st.file for st in tu.field_stores)
    out = _Snapshot()
    for rel in rels:
        path = rel if os.path.isabs(rel) else os.path.join(tree, rel)
        out[path] = read_source(path, None)
    return out


@dataclass
class _Job:
    """What the analysis of one version needs besides the tree, the model and
    an earlier version's flows."""

    sha: str
    tus: list[TUFacts]
    mode: str
    problems: list[str]
    parsed: int
    sources: dict[str, bytes | None]  # a _Snapshot


def _analysed(job: _Job, *, tree: str, model: ApiModel, preview: bool,
              memo: FlowMemo | None = None,
              changed: frozenset[str] = frozenset()) -> tuple[Version, FlowMemo | None]:
    """The analysis of one version, reading files only from `job.sources`,
    and the flows the next version may reuse. memo: those of an earlier
    version; changed: the TUs whose facts differ from that version's."""
    from reviewer.analysis.engine import analyze
    from reviewer.analysis.incremental import export, reusable

    sha, sources = job.sha, job.sources
    # What reusable() learnt of this version's call graph, for the next one.
    graph: dict[str, tuple[dict[str, Shape], set[str]]] = {}

    def reuse(program: Program) -> dict[FlowKey, Flow]:
        flows, shapes, cyclic = reusable(program, memo, set(changed))
        graph["this"] = (shapes, cyclic)
        return flows

    analysis = analyze(FactSet(job.tus), model, root=tree, preview=preview, sources=sources,
                       reuse=reuse if _reuse_flows() else None)
    ctx = analysis.context
    assert ctx is not None
    contexts: dict[str, dict[str, str]] = {}
    chains: dict[str, dict[str, str]] = {}
    params: dict[str, tuple[str, ...]] = {}
    names: dict[str, tuple[str, str, int]] = {}
    calls: dict[str, list[str]] = {}
    for key, info in ctx.program.functions.items():
        reaches = ctx.contexts.reaches(key)
        contexts[key] = {r.ctx: r.bql_text for r in reaches}
        chains[key] = {r.ctx: SEP.join(r.chain) for r in reaches}
        params[key] = tuple(p.name for p in info.fact.params)
        names[key] = (info.name, info.fact.file, info.fact.line)
        for site in info.sites.values():
            c = site.call
            if c.via == "direct":
                calls.setdefault(c.callee, []).append(
                    SEP.join((c.file, str(c.line), info.name, str(len(c.values)))))
    excerpts = {f.fingerprint: _excerpt(tree, f.file, f.line, sources)
                for f in analysis.findings}
    degraded = [(tu.file, tu.errors) for tu in job.tus if tu.degraded]
    out = export(sha, ctx.bql.flows, *graph["this"]) if graph else None
    return Version(sha, list(analysis.findings), contexts, chains, params, names, calls,
                   excerpts, degraded, list(job.problems), job.mode, job.parsed), out


Analysed = tuple[Version, "FlowMemo | None"]


def _reuse_flows() -> bool:
    """REVIEWER_FLOW_MEMO=0 analyses every version from scratch (to compare)."""
    return os.environ.get("REVIEWER_FLOW_MEMO", "1") != "0"


def _outcome(work: Callable[[], object]) -> bytes:
    """work()'s result, or the exception it raised, pickled for the parent.
    An exception that would not come back out of a pickle as it went in (one
    whose constructor takes other arguments) is sent as a RuntimeError with
    its type, message and traceback."""
    try:
        return pickle.dumps(("ok", work()), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        try:
            data = pickle.dumps(("error", exc), protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(data)
            return data
        except Exception:
            text = "".join(traceback.format_exception(exc))
            return pickle.dumps(("error", RuntimeError(
                f"the analysis failed: {type(exc).__name__}: {exc}\n{text}")))


class _Analyst:
    """Analyses versions in order, each starting from the flows the one before
    left (reviewer.analysis.incremental), told which TUs changed since: the
    fact cache hands out the same object for a TU that did not change."""

    def __init__(self, work: Callable[..., Analysed],
                 store: Callable[[Version], None] = lambda v: None) -> None:
        self.work = work
        self.store = store  # where a version goes once analysed: the version cache
        self.memo: FlowMemo | None = None
        self.tus: dict[str, TUFacts] = {}  # those of the memo's version, by file
        self.last: tuple[_Job, Version] | None = None

    def __call__(self, job: _Job) -> Version:
        if self.last is not None and _same_input(self.last[0], job):
            # A patch that changed no facts and none of the files the analysis
            # reads (documentation, build files, a comment in a header):
            # the analysis would be the same.
            version = dataclasses.replace(self.last[1], sha=job.sha, problems=list(job.problems),
                                          mode=job.mode, parsed=job.parsed)
        else:
            version = self._analyse(job)
        self.last = (job, version)
        # Cached here, in the worker: the scan does not encode it at the end.
        # Not when a TU could not be parsed at all (over the time or memory
        # limit, libclang crashed): those TUs are tried again next time, and
        # so is the version.
        if not any(tu.failed for tu in job.tus):
            self.store(version)
        return version

    def _analyse(self, job: _Job) -> Version:
        tus = {tu.file: tu for tu in job.tus}
        changed: frozenset[str] = frozenset()
        if self.memo is not None:
            changed = frozenset({f for f, tu in tus.items() if self.tus.get(f) is not tu}
                                | (self.tus.keys() - tus.keys()))
        # The analysis builds ~10^5 small acyclic objects (states, steps,
        # flows): the collector's passes over them and over the facts, which
        # find nothing, took an eighth of its time. Cycles it leaves are
        # collected after.
        with gc_paused():
            version, self.memo = self.work(job, memo=self.memo, changed=changed)
        self.tus = tus
        return version


def _same_input(before: _Job, job: _Job) -> bool:
    """The same TU facts (the fact cache hands out the same object for a TU
    that did not change) and the same files read."""
    return (len(before.tus) == len(job.tus)
            and all(a is b for a, b in zip(before.tus, job.tus, strict=True))
            and before.sources == job.sources)


def _delta(job: _Job, before: _Job | None) -> _Job:
    """job as sent to the analysis worker, which holds `before`: a TU it has
    already is named by its file, and only the files that changed are sent
    (`sources` maps a file it must forget to the _GONE marker)."""
    if before is None:
        return job
    old = {tu.file: tu for tu in before.tus}
    tus: list[Any] = [tu.file if old.get(tu.file) is tu else tu for tu in job.tus]
    sources: dict[str, Any] = {k: v for k, v in job.sources.items()
                               if dict.get(before.sources, k, _GONE) != v}
    sources.update({k: _GONE for k in before.sources.keys() - job.sources.keys()})
    return _Job(job.sha, tus, job.mode, job.problems, job.parsed, sources)


def _undelta(sent: _Job, before: _Job | None) -> _Job:
    if before is None:
        return sent
    old = {tu.file: tu for tu in before.tus}
    sources = _Snapshot(before.sources)
    for k, v in sent.sources.items():
        if isinstance(v, str):  # _GONE
            del sources[k]
        else:
            sources[k] = v
    return _Job(sent.sha, [old[t] if isinstance(t, str) else t for t in sent.tus], sent.mode,
                sent.problems, sent.parsed, sources)


_GONE = "<gone>"  # a str: no file's content, which is bytes or None


class _Analyses:
    """Versions analysed in order by one worker process while the scan goes on.

    A version's analysis (~0.4 s on migration/) needs only its facts and a
    snapshot of the files it reads, so it can run while the next versions are
    materialised and parsed: with --jobs 2 that is the core a one-TU re-parse
    leaves idle. The worker is forked with the first version's job and keeps
    every version it saw, so each later one is sent as what changed (a spool
    file per job and per result, named on a pipe: the scan never waits for
    the worker to take a job, and reads the worker's notices as it sends each
    job, so that the worker never waits for the scan either). It also keeps
    the flows a later version may reuse. Without a worker (--jobs 1)
    everything runs here, in order."""

    def __init__(self, in_worker: bool,
                 store: Callable[[Version], None] = lambda v: None) -> None:
        self.in_worker = in_worker
        self.store = store
        self.done: dict[str, Version] = {}
        self.sent: list[str] = []  # shas, in the order they were given
        self.last: _Job | None = None
        self.analyst: _Analyst | None = None  # here, without a worker
        self.pid = 0
        self.spool = ""
        self.jobs_w = -1
        self.results = -1  # the read end of the worker's notices
        self.unread = b""  # the start of a notice not whole yet
        self.finished: list[int] = []  # jobs whose result is in the spool
        self.received = 0  # notices read, of len(self.sent) jobs

    def start(self, job: _Job, work: Callable[..., Analysed], spool: str,
              last: bool = False) -> None:
        """Analyse `job` with `work` (the same for every job); the worker's
        files go in the directory `spool` (made here; the caller removes it
        also when this process is killed: see _scratch). `last`: the scan has
        nothing left to extract after this job."""
        if not self.in_worker:
            self.analyst = self.analyst or _Analyst(work, self.store)
            self.done[job.sha] = self.analyst(job)
            return
        if (last and self.pid and self._behind()
                and (self.last is None or not _same_input(self.last, job))):
            # The parse children are done and the worker is still on an
            # earlier version: analysed here from scratch (~0.55 s on
            # migration/, against ~0.4 s with the worker's flows) it ends
            # sooner than after the worker's turn, with both cores busy. The
            # result is the same (reused flows give what a fresh analysis
            # gives).
            self.done[job.sha] = _Analyst(work, self.store)(job)
            return
        if not self.pid:
            self._fork(job, work, spool)
        else:
            self._notices(wait=False)  # a full pipe would stop the worker
            n = len(self.sent)
            # Named on the pipe only once written whole: no rename needed.
            with open(os.path.join(self.spool, f"job-{n}"), "wb") as fh:
                pickle.dump(_delta(job, self.last), fh, protocol=pickle.HIGHEST_PROTOCOL)
            from reviewer.extract.runner import write_all

            try:
                write_all(self.jobs_w, f"{n}\n".encode())
            except BrokenPipeError:
                # Not the CLI's "stdout was closed": the worker is gone.
                raise self._ended(job.sha) from None
        self.sent.append(job.sha)
        self.last = job

    def _fork(self, job: _Job, work: Callable[..., Analysed], spool: str) -> None:
        from reviewer.extract.runner import sigint_held

        os.makedirs(spool)
        self.spool = spool
        jobs_r, jobs_w = os.pipe()
        results_r, results_w = os.pipe()
        with sigint_held():
            try:
                pid = os.fork()
            except BaseException:
                for fd in (jobs_r, jobs_w, results_r, results_w):
                    os.close(fd)
                raise
            if pid == 0:  # pragma: no cover - the child; its results are checked by the parent
                code = 0
                try:
                    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
                    os.close(jobs_w)
                    os.close(results_r)
                    _serve(_Analyst(work, self.store), job, self.spool, jobs_r, results_w)
                except BaseException:
                    code = 70
                finally:
                    os._exit(code)
            self.pid = pid
            os.close(jobs_r)
            os.close(results_w)
            self.jobs_w = jobs_w
            self.results = results_r

    def _notices(self, wait: bool) -> bool:
        """Take the worker's notices that are there (with `wait`, at least
        one read); False once the worker has closed its end."""
        if not wait and not select.select([self.results], [], [], 0)[0]:
            return True
        chunk = os.read(self.results, 1 << 16)
        if not chunk:
            return False
        *lines, self.unread = (self.unread + chunk).split(b"\n")
        self.finished.extend(int(x) for x in lines)
        self.received += len(lines)
        return True

    def _behind(self) -> bool:
        """Is the worker still on a job it was given?"""
        self._notices(wait=False)
        return self.received < len(self.sent)

    def join(self, sha: str) -> Version:
        if sha not in self.done and sha not in self.sent:
            raise RuntimeError(f"{sha[:12]} was never given to the analysis")
        while sha not in self.done:
            if not self.finished:
                if self.results < 0 or not self._notices(wait=True):
                    raise self._ended(sha)
                continue
            n = self.finished.pop(0)
            path = os.path.join(self.spool, f"result-{n}")
            with open(path, "rb") as fh, gc_paused():
                kind, value = pickle.load(fh)
            os.unlink(path)
            if kind == "error":
                raise value
            self.done[self.sent[n]] = value
        return self.done[sha]

    def _ended(self, sha: str) -> RuntimeError:
        """The worker ended before the analysis of `sha`: why, once reaped."""
        why = "never started"
        if self.pid:  # (waitpid(0) would take any child of the process group)
            _, status = os.waitpid(self.pid, 0)
            self.pid = 0
            why = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exit status {os.WEXITSTATUS(status)}")
        return RuntimeError(f"the analysis worker ended ({why}) before it analysed {sha[:12]}")

    def close(self) -> None:
        """Stop the worker (the scan is over, failed or was interrupted)."""
        if self.pid:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)  # it ignores SIGINT
            with contextlib.suppress(OSError):
                os.waitpid(self.pid, 0)
            self.pid = 0
        if self.jobs_w >= 0:
            with contextlib.suppress(OSError):
                os.close(self.jobs_w)
            self.jobs_w = -1
        if self.results >= 0:
            with contextlib.suppress(OSError):
                os.close(self.results)
            self.results = -1
        if self.spool:
            shutil.rmtree(self.spool, ignore_errors=True)
            self.spool = ""


def _serve(analyst: _Analyst, first: _Job, spool: str, jobs_r: int,
           results_w: int) -> None:  # pragma: no cover - runs in the worker
    """The analysis worker: `first`, then each job the scan names on jobs_r,
    each result written to the spool and named on results_w."""
    from reviewer.extract.runner import write_all

    n, job = 0, first
    with os.fdopen(jobs_r, "rb") as jobs:
        while True:
            with open(os.path.join(spool, f"result-{n}"), "wb") as fh:
                fh.write(_outcome(functools.partial(analyst, job)))
            write_all(results_w, f"{n}\n".encode())  # once the file is whole
            line = jobs.readline()
            if not line:
                return  # the scan is over
            n = int(line)
            path = os.path.join(spool, f"job-{n}")
            with open(path, "rb") as fh, gc_paused():
                sent = pickle.load(fh)
            os.unlink(path)
            job = _undelta(sent, job)


def _excerpt(tree: str, rel: str, line: int, sources: dict[str, bytes | None] | None = None,
             around: int = 2) -> list[tuple[int, str]]:
    from reviewer.analysis.engine import read_source

    data = read_source(os.path.join(tree, rel), sources)
    if data is None:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    lo, hi = max(1, line - around), min(len(lines), line + around)
    return [(i, lines[i - 1]) for i in range(lo, hi + 1)]


def _diff(before: Version, after: Version, patch: PatchReport, touched: set[str]) -> None:
    b, a = before.findings, after.findings
    patch.new = sorted((a[k] for k in a.keys() - b.keys()), key=Finding.sort_key)
    patch.fixed = sorted((b[k] for k in b.keys() - a.keys()), key=Finding.sort_key)
    patch.excerpts = {f.fingerprint: after.excerpts.get(f.fingerprint, []) for f in patch.new}
    patch.excerpts.update(
        {f.fingerprint: before.excerpts.get(f.fingerprint, []) for f in patch.fixed})
    touched_fns = {
        name for key, (name, file, _) in after.names.items() if file in touched
    }
    patch.preexisting = sorted(
        (a[k] for k in a.keys() & b.keys() if a[k].function in touched_fns),
        key=Finding.sort_key,
    )
    for key in sorted(after.contexts.keys() & before.contexts.keys()):
        old, new = before.contexts[key], after.contexts[key]
        if old == new:
            continue
        added = [f"{c} (BQL {new[c]})" for c in sorted(new) if old.get(c) != new[c]]
        removed = [f"{c} (BQL {old[c]})" for c in sorted(old) if new.get(c) != old[c]]
        name, file, line = after.names[key]
        patch.context_changes.append(ContextChange(
            name, file, line, added, removed,
            {c: after.chains[key][c].split(SEP) for c in sorted(new) if old.get(c) != new[c]},
            file in touched,
        ))
    patch.context_changes.sort(key=lambda c: (not c.touched, c.file, c.line))
    for key in sorted(after.params.keys() & before.params.keys()):
        if before.params[key] == after.params[key]:
            continue
        name, file, line = after.names[key]
        want = len(after.params[key])
        sites = [CallSite(f, ln, caller, n == want)
                 for f, ln, caller, n in sorted(map(call_site, after.calls.get(name, [])))]
        patch.signature_changes.append(SignatureChange(
            name, file, line, before.params[key], after.params[key], sites))
    patch.degraded = [(f, e) for f, e in after.degraded if f in touched]


def scan(repo_path: str, rng: str | None, *, build_dir: str | None = None,
         paths: list[str] | None = None, jobs: int | None = None,
         cache_dir: str | None = None, model: ApiModel, preview: bool = False,
         progress: bool | None = None, resource_dir: str | None = None,
         baseline: set[str] | None = None, scratch_key: str = "",
         source_root: str | None = None, use_cache: bool = True) -> ScanReport:
    """Review the commits of `rng` in the repository at repo_path.

    scratch_key / source_root: when repo_path is a scratch clone (a mailed
    series applied by reviewer), the user's repository stands behind it: its
    key keeps the fact cache warm, its root is where the compile database's
    paths point."""
    repo = Repository(repo_path)
    rng = rng or repo.default_range()
    base, commits = repo.commits(rng)
    if not commits:
        raise UserError(f"{rng}: the range is empty (is it reversed? try B..A)")
    cache = cache_dir or default_cache_dir()
    problems: list[str] = []
    changes_of: dict[str, list[Change]] = {}
    prev = base
    for c in commits:
        changes_of[c.sha] = repo.changes(prev, c.sha)
        prev = c.sha
    scope = list(paths) if paths else list(DEFAULT_PATHS)
    if not paths:
        for c in commits:
            for ch in changes_of[c.sha]:
                if ch.path.endswith(".c") and ch.status != "D" and ch.path not in scope:
                    scope.append(ch.path)
    source_root = source_root or repo.root
    vcache = _VersionCache(cache, _config_digest(model, build_dir, preview, resource_dir),
                           enabled=use_cache)
    # Versions are cached by tree, not commit: a series that only gained
    # trailers (b4 trailers -u), or whose messages were reworded, has new
    # commits with the same trees, and the same analyses.
    trees = {base: repo.tree_of(base), **{c.sha: c.tree for c in commits}}
    cached = {sha: _renamed(vcache.get(vcache.key(trees[sha], scope)), sha) for sha in trees}

    # Analyses run in a worker beside the --jobs parse children, or here with
    # --jobs 1.
    workers = jobs or os.cpu_count() or 1
    analyses = _Analyses(in_worker=workers > 1,
                         store=lambda v: vcache.put(vcache.key(trees[v.sha], scope), v))
    memo: Memo = {}  # fact cache entries, decoded once for all the versions
    # Files hashed once for all the versions: each run is told what changed.
    hashes = ContentHashes()

    def version(sha: str, tree: str, previous: dict[str, bytes | None] | None = None,
                last: bool = False) -> None:
        """Extract a version's facts now; its analysis may finish later."""
        if cached.get(sha) is not None:
            return
        result = _extract(tree, scope, build_dir, source_root, cache, jobs, progress,
                          resource_dir, previous, memo, hashes)
        job = _Job(sha, result.facts.tus, result.plan.mode, list(result.problems),
                   result.parsed, _snapshot(tree, result.facts))
        analyses.start(job, functools.partial(_analysed, tree=tree, model=model, preview=preview),
                       _spool_of(tree), last)

    def analysed(sha: str) -> Version:
        got = cached.get(sha)
        if got is None:
            got = analyses.join(sha)  # and cached by whoever analysed it
        return got

    with contextlib.ExitStack() as stack:
        stack.callback(analyses.close)
        # Every version known already: no scratch tree, nothing to materialise.
        tree = "" if all(cached.values()) else stack.enter_context(
            _scratch(cache, repo, scratch_key))
        if tree:
            touched = [ch.path for c in commits for ch in changes_of[c.sha]]
            repo.archive_to(base, tree, unused_dirs([*scope, *touched]), workers)
        version(base, tree)
        prev = base
        for c in commits:
            previous = previous_of(repo, tree, prev, _materialise(repo, tree, prev, c.sha)
                                   ) if tree else {}
            prev = c.sha
            version(c.sha, tree, previous, last=c is commits[-1])
        before = analysed(base)
        first = before
        problems += before.problems
        patches: list[PatchReport] = []
        for c in commits:
            files = sorted({ch.path for ch in changes_of[c.sha]})
            patch = PatchReport(c, files, message_id=message_id_of(c.message))
            after = analysed(c.sha)
            if c.is_merge:
                patch.skipped = "merge commit: not reviewed as a patch"
            else:
                patch.parsed = after.parsed
                _diff(before, after, patch, set(files))
            patches.append(patch)
            before = after
    hidden = 0
    if baseline:
        for p in patches:
            kept = [f for f in p.new if f.fingerprint not in baseline]
            hidden += len(p.new) - len(kept)
            p.new = kept
    remaining = [f for k, f in before.findings.items()
                 if k not in first.findings and (not baseline or k not in baseline)]
    remaining.sort(key=Finding.sort_key)
    mode = before.mode
    return ScanReport(repo.root or repo.git_dir, rng, base, mode, patches, remaining,
                      sorted(set(problems)), hidden,
                      sorted(before.findings.values(), key=Finding.sort_key))


def read_baseline(path: str) -> set[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return {str(x) for x in data["fingerprints"]}
    except OSError as exc:
        raise UserError(f"{path}: cannot read the baseline ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a reviewer baseline (write one with --write-baseline)"
                        ) from None


def write_baseline(path: str, report: ScanReport) -> None:
    data = {"schema": 1, "range": report.range,
            "fingerprints": sorted({f.fingerprint for f in report.tip})}
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the baseline ({exc.strerror})") from None
