"""Turn paths into facts: find the TUs, give each its flags, use the cache, run
libclang in parallel, and say what could not be read.

Each TU is parsed in a forked child of its own, under a time limit
(REVIEWER_TU_TIMEOUT seconds, default 120) and a memory limit
(REVIEWER_TU_MEMORY MiB of address space on top of the parent's, default 4096).
A TU that exceeds either, that crashes libclang (a 20,000-term expression
overflows clang's stack) or that nests deeper than the walker follows is
skipped with a notice; the run goes on (docs/robustness.md).

The parses run on an executor: forked children on this machine (the default)
or a Dask cluster (`Executor("dask")`), where each task runs the same bounded
child on its worker, with the driver's limits. Either way this process checks
the cache, sends only the misses out, and writes each result to the cache as
it comes back, so workers on other machines need neither the cache directory
nor write access to it; they do need reviewer installed and the tree (and
build directory) at the same paths.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import os
import pickle
import re
import resource
import select
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from reviewer.errors import UserError
from reviewer.extract.cache import ContentHashes, FactCache, Memo, default_cache_dir, gc_paused
from reviewer.extract.delta import Carrier, Splice, header_facts, splice_class, splice_headers
from reviewer.extract.facts import FactSet, TUFacts
from reviewer.extract.flags import FlagPlan, include_search, plan_flags
from reviewer.extract.pch import MIN_GROUP, PCH_ARGS, PREFIX, Pch, PchStore, starts_with_prefix
from reviewer.extract.pch import usable as pch_usable


@dataclass
class Inputs:
    tus: list[str] = field(default_factory=list)  # absolute paths of .c files
    scope: tuple[str, ...] = ()  # root-relative dirs/headers whose inline functions count
    problems: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    facts: FactSet
    plan: FlagPlan
    problems: list[str]
    parsed: int = 0
    cached: int = 0
    carried: int = 0  # cached facts kept across a header change that cannot touch them
    precompiled: int = 0  # TUs parsed with a precompiled prefix (reviewer.extract.pch)
    spliced: int = 0  # cached facts kept with new facts of changed headers' functions

    @property
    def degraded(self) -> list[TUFacts]:
        return [tu for tu in self.facts.tus if tu.degraded]


def collect(paths: Iterable[str], root: str) -> Inputs:
    root = os.path.abspath(root)
    out = Inputs()
    scope: list[str] = []
    seen: set[str] = set()

    def add_tu(p: str) -> None:
        p = os.path.normpath(os.path.abspath(p))
        if p not in seen:
            seen.add(p)
            out.tus.append(p)

    for raw in paths:
        p = os.path.abspath(os.path.join(root, raw)) if not os.path.isabs(raw) else raw
        rel = os.path.relpath(p, root)
        if os.path.isdir(p):
            scope.append(rel)
            inc = os.path.join(root, "include", rel)
            if os.path.isdir(inc):
                scope.append(os.path.relpath(inc, root))
            found = sorted(
                os.path.join(d, f)
                for d, _, files in os.walk(p)
                for f in files
                if f.endswith(".c")
            )
            headers = not found and any(
                f.endswith(".h") for _, _, files in os.walk(p) for f in files)
            if not found and not headers:
                # A header directory (include/migration) is scope, not a problem.
                out.problems.append(f"{raw}: no .c files in this directory; nothing to read")
            for f in found:
                add_tu(f)
        elif os.path.isfile(p):
            if p.endswith(".c"):
                add_tu(p)
            elif p.endswith(".h"):
                scope.append(rel)
            else:
                out.problems.append(f"{raw}: not a C source or header (.c/.h); skipped")
        else:
            out.problems.append(f"{raw}: no such file or directory; skipped")
    out.scope = tuple(dict.fromkeys(s for s in scope if s != "."))
    return out


def _extract_job(job: Job) -> tuple[TUFacts, list[str]]:
    # Imported here, not at the top: loading libclang costs start-up time that a
    # fully cached run does not need.
    from reviewer.extract import clangwalk

    path, args, root, mode, scope, unsaved, pch = job
    try:
        if pch:
            try:
                return clangwalk.extract(path, [*args, *PCH_ARGS], root=root, mode=mode,
                                         scope=scope, unsaved=unsaved, pch=pch)
            except clangwalk.ParseFailure:
                pass  # a PCH removed or damaged since it was checked: parse it all
        return clangwalk.extract(path, args, root=root, mode=mode, scope=scope, unsaved=unsaved)
    except clangwalk.ParseFailure as exc:
        rel = os.path.relpath(path, root)
        return TUFacts(file=rel, mode=mode, failed=str(exc)), []
    except (clangwalk.TooDeep, RecursionError, ctypes.ArgumentError) as exc:
        # ctypes reports a RecursionError inside a libclang callback as an
        # ArgumentError; anything else is a bug and propagates.
        if isinstance(exc, ctypes.ArgumentError) and "RecursionError" not in str(exc):
            raise
        return _skipped(job, "nested too deeply for reviewer's walker; skipped"), []


# (path, args, root, mode, scope, unsaved, pch): everything one parse needs, so
# that it can run in another process or on another machine (where pch, a
# precompiled prefix on this machine, is "").
Job = tuple[str, list[str], str, str, tuple[str, ...], dict[str, bytes], str]
JobResult = tuple[TUFacts, list[str]]  # (facts, absolute paths of the included files)

EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class Executor:
    """Where the cache misses are parsed.

    local: forked children on this machine (--jobs at a time).
    dask:  a Dask cluster; `scheduler` is the address of a running one, or None
           to start a LocalCluster of --jobs single-threaded worker processes for
           this run (the Python walker holds the GIL, so threads would not help).
    """

    kind: str = "local"
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise UserError(f"--executor {self.kind}: unknown (one of {', '.join(EXECUTORS)})")
        if self.scheduler and self.kind != "dask":
            raise UserError("--scheduler needs --executor dask")


def _skipped(job: Job, why: str) -> TUFacts:
    path, _, root, mode, _, _, _ = job
    return TUFacts(file=os.path.relpath(path, root), mode=mode, failed=why)


MAX_DEPTH = 200  # statement nesting the analysis follows (QEMU's deepest is ~10)


def _depth(facts: TUFacts) -> int:
    """The deepest statement nesting in a TU's function bodies (iteratively:
    the analysis walks bodies recursively, so this is checked before it sees one)."""
    deepest = 0
    stack = [(fn.body, 1) for fn in facts.functions]
    while stack:
        nodes, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            break
        stack.extend((b, d + 1) for n in nodes for b in n.branches)
    return deepest


def _limits() -> tuple[float, int]:
    """(seconds, bytes) allowed per TU; REVIEWER_TU_TIMEOUT / REVIEWER_TU_MEMORY (MiB)."""
    def num(name: str, default: float) -> float:
        try:
            value = float(os.environ.get(name, "") or default)
        except ValueError:
            return default
        return value if value > 0 else default

    return num("REVIEWER_TU_TIMEOUT", 120.0), int(num("REVIEWER_TU_MEMORY", 4096.0) * 2**20)


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """SIGINT blocked across a fork and the parent's note of the child.

    The children ignore Ctrl-C (their parent handles it and kills them), but
    only from their first line of their own: a Ctrl-C between the fork and
    that line would raise KeyboardInterrupt in a copy of the parent, which
    would then run the parent's cleanup. Blocked, it waits: the child sets
    SIG_IGN, which discards it, and the parent takes it once the child's pid
    is where its cleanup looks."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_all(fd: int, data: bytes) -> None:
    """All of data to a pipe (os.write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _limit_memory(memory: int) -> None:
    """In a forked child: at most `memory` bytes of address space more."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + memory, resource.RLIM_INFINITY))


def _child(job: Job, fd: int, memory: int) -> None:
    """In the forked child: parse, send the pickled result, exit without
    running the parent's atexit handlers or flushing its buffers."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
        # What the parent held (a scan's facts of every TU so far) is never
        # garbage here: the collector's passes would walk it, and copy its
        # pages, for each TU. Only what this child makes is collected (a
        # zygote's children run with the collector off, as the zygote does).
        gc.freeze()
        _limit_memory(memory)
        try:
            from reviewer.extract import clangwalk

            clangwalk.keep_translation_units()  # this process ends with os._exit
            out = _extract_job(job)
            if _depth(out[0]) > MAX_DEPTH:
                out = (_skipped(job, f"statements nested more than {MAX_DEPTH} deep; skipped"),
                       [])
        except MemoryError:
            out = (_skipped(job, f"needs more than {memory >> 20} MiB (REVIEWER_TU_MEMORY); "
                            "skipped"), [])
        write_all(fd, pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def run(
    paths: list[str],
    *,
    root: str,
    build_dir: str | None = None,
    resource_dir: str | None = None,
    cache_dir: str | None = None,
    use_cache: bool = True,
    jobs: int | None = None,
    unsaved: dict[str, bytes] | None = None,
    progress: bool | None = None,
    plan: FlagPlan | None = None,
    scope: tuple[str, ...] | None = None,
    executor: Executor | None = None,
    previous: dict[str, bytes | None] | None = None,
    memo: Memo | None = None,
    hashes: ContentHashes | None = None,
) -> RunResult:
    """Facts of the TUs under `paths`, from the cache or from libclang.

    previous: the content each changed file had in the version analysed just
    before this one (absolute path -> bytes, None if it did not exist), as a
    scan knows it; a TU whose only change is in headers that cannot alter its
    facts (reviewer.extract.delta) keeps them instead of being parsed again.

    memo: cache entries already in memory, shared by the runs of one scan.
    hashes: the files' content hashes, shared by the runs of one scan (without
    unsaved files); those of the files in `previous` are taken again."""
    root = os.path.normpath(os.path.abspath(root))
    if not os.path.isdir(root):
        raise UserError(f"{root}: not a directory; give the top of a QEMU tree with --root")
    inputs = collect(paths, root)
    if scope is not None:
        inputs.scope = scope
    if plan is None:
        plan = plan_flags(root, build_dir, resource_dir, cache_dir)
    cache = FactCache(cache_dir, enabled=use_cache, memo=memo)
    if hashes is None or unsaved:
        hashes = ContentHashes(unsaved)
    hashes.forget(previous or ())
    problems = list(inputs.problems) + plan.notes
    results: dict[str, TUFacts] = {}
    todo: list[tuple[str, str]] = []  # (path, cache key)
    carrier = Carrier(root, inputs.scope, previous, unsaved,
                      lambda main: include_search(plan.args_for(main))) if previous else None
    before = {p: ContentHashes.digest(d) for p, d in (previous or {}).items() if d is not None}
    # Files this step adds: one may now be what an #include finds first (a
    # trace.h beside the TU shadowing the one found through -I; a header the
    # TU could not find). The cache records the files a TU found, not where
    # it looked: an entry that found, or missed, a file of the same name is
    # not trusted.
    added = {os.path.basename(p) for p, d in (previous or {}).items() if d is None}

    probes: dict[str, frozenset[str]] = {}  # file -> basenames its __has_include tests

    def probed(path: str) -> frozenset[str]:
        got = probes.get(path)
        if got is None:
            # Files are added only in a step with `previous`: the carrier,
            # which reads each file once (unsaved contents first), is there.
            text = (carrier.text(path) if carrier is not None else None) or ""
            got = probes[path] = frozenset(
                os.path.basename(n) for n in _HAS_INCLUDE.findall(text))
        return got

    def stale(main: str, includes: dict[str, str], facts: TUFacts) -> bool:
        return (any(os.path.basename(inc) in added for inc in includes if inc != main)
                or any(os.path.basename(m) in added for m in facts.missing_headers)
                or any(not added.isdisjoint(probed(inc)) for inc in includes))

    carried = spliced = 0
    splices: dict[str, tuple[str, Splice, list[str]]] = {}  # path -> (key, it, includes)
    for path in inputs.tus:
        rel = os.path.relpath(path, root)
        if plan.mode == "build" and plan.entries and plan.entry_for(path) is None:
            problems.append(f"{rel}: not in compile_commands.json; read with no-build flags")
        _check_text(path, unsaved, problems, rel)
        key = cache.key(rel, hashes(path), plan.digest(path), inputs.scope)
        hit = cache.get(key, hashes, functools.partial(stale, path) if added else None)
        if hit is None and carrier is not None:
            near = cache.get_near(key, hashes, before)
            if near is not None and not (added and stale(path, near[1], near[0])):
                got = carrier.carry(path, *near)
                if isinstance(got, Splice):
                    splices[path] = (key, got, list(near[1]))
                    continue
                hit = got
                if hit is not None:
                    carried += 1
                    cache.put(key, hit, {inc: hashes(inc) for inc in near[1]})
        if hit is not None:
            results[path] = hit
        else:
            todo.append((path, key))
    # TUs whose facts hold but for the functions of changed headers in scope
    # (a new inline function in migration/migration.h): one per header set and
    # flag set is parsed, and gives the others those functions' new facts.
    groups: dict[tuple[object, ...], list[str]] = {}
    for p, (_, sp, _) in splices.items():
        cls = splice_class(sp)
        groups.setdefault((p,) if cls is None else (*cls, plan.digest(p)), []).append(p)
    reps = {cls: min(members, key=_size) for cls, members in groups.items()}
    # A TU where the change's names may mean something else than in its
    # representative is parsed in the same round as the representatives, not
    # after them: whether they mean the same needs no parse.
    alone = {p for cls, members in groups.items() for p in members if p != reps[cls] and (
        carrier is None or not carrier.same_meaning(splices[p][1], splices[reps[cls]][1]))}
    todo += [(p, splices[p][0]) for p in inputs.tus if p in reps.values() or p in alone]
    executor = executor or Executor()
    precompiled: dict[str, Pch] = {}  # TUs given a PCH (a failing one falls back)
    with contextlib.ExitStack() as stack:  # holds a PCH directory made for this run only
        store: list[PchStore] = []

        def parse(items: list[tuple[str, str]]) -> None:
            """Parse these TUs, caching each result as it comes."""
            mode_of = {p: ("build" if plan.entry_for(p) is not None else "nobuild")
                       for p, _ in items}
            pchs: dict[str, Pch] = {}
            if executor.kind == "local" and items and os.environ.get("REVIEWER_PCH", "1") != "0":
                if not store:
                    store.append(PchStore((cache_dir or default_cache_dir()) if use_cache
                                          else stack.enter_context(tempfile.TemporaryDirectory(
                                              prefix="reviewer-pch-"))))
                pchs = _prefixes([p for p, _ in items], plan, root, inputs.scope, unsaved,
                                 store[0], jobs, None if unsaved else hashes)
                precompiled.update(pchs)
            jobs_list: list[Job] = [
                (p, plan.args_for(p), root, mode_of[p], inputs.scope, dict(unsaved or {}),
                 pchs[p].path if p in pchs else "")
                for p, _ in items
            ]
            # Results may come back in any order (a cluster finishes them as it
            # can); each is cached as it arrives, and failures are reported
            # afterwards in input order so that the problems list does not
            # depend on the executor.
            for i, (facts, includes) in _map(jobs_list, jobs, progress, executor):
                path, key = items[i]
                results[path] = facts
                if not facts.failed:
                    # A TU parsed with a PCH depends on the files in it too
                    # (libclang does not list them among the TU's inclusions).
                    # In inclusion order: the PCH's files come first.
                    deps = [path, *(pchs[path].inputs if path in pchs else ()), *includes]
                    cache.put(key, facts, {inc: hashes(inc) for inc in deps})

        parse(todo)
        again: list[tuple[str, str]] = []
        for cls, members in groups.items():
            rep = reps[cls]
            change = header_facts(splices[rep][1], results[rep])
            for p in members:
                if p == rep or p in alone:
                    continue
                key, sp, includes = splices[p]
                new = None
                if change is not None:
                    new = splice_headers(sp, change)
                if new is None:
                    again.append((p, key))
                    continue
                results[p] = new
                spliced += 1
                cache.put(key, new, {inc: hashes(inc) for inc in includes})
        again.sort(key=lambda item: inputs.tus.index(item[0]))
        parse(again)
        todo += again
    problems.extend(
        f"{results[p].file}: {results[p].failed}" for p, _ in todo if results[p].failed
    )
    cache.keep_used()
    if cache.rejected:
        problems.append(f"cache: {cache.rejected} corrupted entries dropped and rebuilt")
    if cache.warning:
        problems.append(cache.warning)
    tus = [results[p] for p in inputs.tus]
    cached = len(inputs.tus) - len(todo)
    return RunResult(FactSet(tus), plan, problems, parsed=len(todo),
                     cached=cached, carried=carried, precompiled=len(precompiled),
                     spliced=spliced)


# `__has_include("x.h")` / `__has_include(<x.h>)`: a file it finds absent
# leaves no trace among the TU's includes or errors.
_HAS_INCLUDE = re.compile(r"__has_include(?:_next)?\s*\(\s*[<\"]([^>\"]+)[>\"]")


def _size(path: str) -> int:
    """A TU's size, to choose the quickest to parse among equals."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _prefixes(paths: list[str], plan: FlagPlan, root: str, scope: tuple[str, ...],
              unsaved: dict[str, bytes] | None, store: PchStore, jobs: int | None,
              disk: ContentHashes | None = None) -> dict[str, Pch]:
    """The precompiled prefix each TU to parse can use (reviewer.extract.pch):
    TUs that begin with the prefix's #include are grouped by their flags; a
    group uses the stored PCH for its flags if it still fits, and one is built
    for a group of MIN_GROUP or more. Anything that goes wrong here (an
    unwritable cache, a fork that fails) only means the TUs are parsed whole."""
    overrides = unsaved or {}
    groups: dict[tuple[str, ...], list[str]] = {}
    for p in paths:
        data = overrides.get(p)
        if data is None:
            try:
                with open(p, "rb") as fh:
                    data = fh.read(1 << 16)  # past any licence comment
            except OSError:
                continue
        # A TU beside a qemu/ directory of its own would find another header.
        own = os.path.join(os.path.dirname(p), PREFIX)
        if starts_with_prefix(data) and own not in overrides and not os.path.exists(own):
            groups.setdefault(tuple(plan.args_for(p)), []).append(p)
    if not groups:
        return {}
    # A PCH is built from the files on disk, so it is checked against their
    # hashes, not the run's unsaved versions of them.
    disk = disk or ContentHashes()
    found: dict[tuple[str, ...], Pch] = {}
    build: list[tuple[tuple[str, ...], str, str]] = []  # (args, key, where to)
    try:
        for args, members in groups.items():
            key = store.key(list(args))
            pch = store.lookup(key, disk)
            if pch is not None:
                found[args] = pch
            elif len(members) >= MIN_GROUP:
                build.append((args, key, store.new_path(key)))
        if build:
            header = store.header()
            specs = [(header, list(args), out) for args, _, out in build]
            for (args, key, out), inputs in zip(build, _build_pchs(specs, jobs), strict=True):
                # Not kept when the run overrides one of its files: the next
                # run would take the disk's version for the one it was built from.
                if inputs is not None and not any(i in overrides for i in inputs):
                    found[args] = store.commit(key, out, inputs, disk)
    except OSError:
        pass
    finally:
        for _, _, out in build:
            if not any(p.path == out for p in found.values()):
                with contextlib.suppress(OSError):
                    os.unlink(out)
    return {p: found[args] for args, members in groups.items() if args in found
            and pch_usable(found[args], root, scope, unsaved) for p in members}


def _build_pchs(specs: list[tuple[str, list[str], str]], jobs: int | None
                ) -> list[list[str] | None]:
    """Build each (header, args, out) PCH in a forked child, `jobs` at a time:
    the files each included, or None where it failed (an error in the
    prefix, a crash, the time limit)."""
    from reviewer.extract import clangwalk

    timeout, memory = _limits()
    workers = max(1, min(jobs or os.cpu_count() or 1, len(specs)))
    out: list[list[str] | None] = [None] * len(specs)
    running: dict[int, tuple[int, int, float]] = {}  # pid -> (index, read end, deadline)
    chunks: dict[int, list[bytes]] = {}
    nxt = 0
    try:
        while nxt < len(specs) or running:
            while nxt < len(specs) and len(running) < workers:
                r, w = os.pipe()
                with sigint_held():
                    try:
                        pid = os.fork()
                    except OSError:
                        os.close(r)
                        os.close(w)
                        raise
                    if pid == 0:  # pragma: no cover - the child
                        code = 0
                        try:
                            os.close(r)
                            signal.signal(signal.SIGINT, signal.SIG_IGN)
                            _limit_memory(memory)
                            clangwalk.keep_translation_units()
                            header, args, dest = specs[nxt]
                            got = clangwalk.build_pch(header, args, dest)
                            write_all(w, pickle.dumps(got))
                        except BaseException:
                            code = 70
                        finally:
                            os._exit(code)
                    os.close(w)
                    running[pid] = (nxt, r, time.monotonic() + timeout)
                    chunks[pid] = []
                nxt += 1
            fds = {r: pid for pid, (_, r, _) in running.items()}
            wait = max(0.0, min(d for _, _, d in running.values()) - time.monotonic())
            ready, _, _ = select.select(list(fds), [], [], wait)
            for r in ready:
                pid = fds[r]
                data = os.read(r, 1 << 16)
                if data:
                    chunks[pid].append(data)
                    continue
                i, _, _ = running.pop(pid)
                os.close(r)
                status = _wait(pid)
                if status == (0, None):
                    with contextlib.suppress(Exception):
                        out[i] = pickle.loads(b"".join(chunks[pid]))
            now = time.monotonic()
            for pid, (_, r, deadline) in list(running.items()):
                if deadline <= now:
                    _kill(pid)
                    os.close(r)
                    del running[pid]
    finally:
        for pid, (_, r, _) in running.items():
            _kill(pid)
            with contextlib.suppress(OSError):
                os.close(r)
    return out


def _check_text(path: str, unsaved: dict[str, bytes] | None, problems: list[str], rel: str) -> None:
    data = (unsaved or {}).get(path)
    if data is None:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            problems.append(f"{rel}: cannot be read ({exc.strerror}); skipped")
            return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            f"{rel}: not valid UTF-8 (byte {exc.start}); text read with replacement characters"
        )


def _map(
    jobs_list: list[Job],
    jobs: int | None,
    progress: bool | None,
    executor: Executor,
) -> Iterator[tuple[int, JobResult]]:
    """Extract the jobs' TUs, yielding (index, result) as each comes: the caller
    writes each cache entry while the children are still parsing, instead of all
    of them after the last parse."""
    n = len(jobs_list)
    if n == 0:
        return
    workers = max(1, min(jobs or os.cpu_count() or 1, n))
    show = sys.stderr.isatty() if progress is None else progress
    tick: Callable[[], None] = lambda: None  # noqa: E731
    prog = None
    if show:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        prog = Progress(
            TextColumn("parsing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            transient=True,
        )
        prog.start()
        task = prog.add_task("parse", total=n)

        def tick() -> None:
            prog.advance(task)

    try:
        if executor.kind == "dask":
            source = _map_dask(jobs_list, workers, executor.scheduler)
        else:
            source = _map_local(jobs_list, workers)
        for r in source:
            yield r
            tick()
    finally:
        if prog is not None:
            prog.stop()


# A whole-tree run parses thousands of TUs in children forked from a parent
# that holds the facts of every TU parsed so far (up to ~450 MB). Forking, and
# tearing down, a large process costs: on 300 TUs of QEMU, a parent carrying
# 300 MB made the same parses 9% slower. Above this many TUs the children are
# forked by a zygote instead: a process forked once at the start, while this
# one is still small, that forks a child per TU on request and sends back its
# result (the stdlib's fork server re-imports the main module in every child).
ZYGOTE_FROM = 64


def _use_zygote(n: int) -> bool:
    forced = os.environ.get("REVIEWER_ZYGOTE", "")
    return forced == "1" if forced else n >= ZYGOTE_FROM


def _map_local(jobs_list: list[Job], workers: int) -> Iterator[tuple[int, JobResult]]:
    if _use_zygote(len(jobs_list)):
        return _map_zygote(jobs_list, workers)
    return _map_forked(jobs_list, workers)


def _map_zygote(jobs_list: list[Job], workers: int) -> Iterator[tuple[int, JobResult]]:
    """Children forked by the zygote, `workers` at a time; results in input order."""
    from multiprocessing.connection import Connection

    from reviewer.extract import clangwalk  # noqa: F401  (the zygote's children inherit it)

    n = len(jobs_list)
    timeout, memory = _limits()
    here, there = socket.socketpair()
    with sigint_held():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the zygote
            here.close()
            _zygote(jobs_list, Connection(there.detach()), memory)
        there.close()
        conn = Connection(here.detach())
    running: dict[int, float] = {}  # index -> deadline
    done: dict[int, tuple[TUFacts, list[str]]] = {}
    nxt = out = 0

    def start() -> None:
        nonlocal nxt
        while nxt < n and len(running) < workers:
            conn.send(("start", nxt))
            running[nxt] = time.monotonic() + timeout
            nxt += 1

    try:
        while out < n:
            start()
            if running:
                wait = max(0.0, min(running.values()) - time.monotonic())
                if conn.poll(wait):
                    i, code, sig, data = conn.recv()
                    if i in running:
                        del running[i]
                        # The next child starts before this result is decoded
                        # and cached: a few ms per TU that a core would idle.
                        start()
                        done[i] = _collect_child(jobs_list[i], (code, sig), data, memory)
                now = time.monotonic()
                for i in [i for i, end in running.items() if end <= now]:
                    del running[i]
                    conn.send(("kill", i))
                    done[i] = (_timed_out(jobs_list[i], timeout), [])
            while out in done:
                yield out, done.pop(out)
                out += 1
    finally:
        conn.close()  # the zygote kills what still runs and exits
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def _zygote(jobs_list: list[Job], conn: Any, memory: int) -> None:  # pragma: no cover
    """Fork a child per ("start", index) message, send back (index, exit
    code, signal, output) when it ends; ("kill", index) kills one; the end of
    the connection kills all and exits."""
    code = 0
    children: dict[int, tuple[int, int, list[bytes]]] = {}  # fd -> (index, pid, data)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
        gc.disable()  # a long-lived fork source: keep its pages shared and unchanged
        while True:
            ready, _, _ = select.select([conn.fileno(), *children], [], [])
            for fd in ready:
                if fd == conn.fileno():
                    try:
                        what, i = conn.recv()
                    except (EOFError, OSError):
                        return
                    if what == "start":
                        r, w = os.pipe()
                        pid = os.fork()
                        if pid == 0:
                            os.close(r)
                            conn.close()
                            for other in children:
                                os.close(other)
                            _child(jobs_list[i], w, memory)
                        os.close(w)
                        children[r] = (i, pid, [])
                    else:
                        for cfd, (ci, cpid, _) in list(children.items()):
                            if ci == i:
                                _kill(cpid)
                                os.close(cfd)
                                del children[cfd]
                    continue
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    children[fd][2].append(chunk)
                    continue
                i, pid, data = children.pop(fd)
                os.close(fd)
                code_, sig = _wait(pid)
                conn.send((i, code_, sig, b"".join(data)))
    except BaseException:
        code = 70
    finally:
        for _, pid, _ in children.values():
            _kill(pid)
        os._exit(code)


def _map_forked(jobs_list: list[Job], workers: int) -> Iterator[tuple[int, JobResult]]:
    """Children forked from here, `workers` at a time; results in input order."""
    n = len(jobs_list)
    # libclang is loaded once, before forking: each child starts with it.
    from reviewer.extract import clangwalk  # noqa: F401

    timeout, memory = _limits()
    running: dict[int, tuple[int, int, float, list[bytes]]] = {}  # fd -> (index, pid, end, data)
    done: dict[int, tuple[TUFacts, list[str]]] = {}
    nxt = 0  # next job to start
    out = 0  # next result to yield

    def start() -> None:
        nonlocal nxt
        while nxt < n and len(running) < workers:
            r, w = os.pipe()
            with sigint_held():
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child
                    os.close(r)
                    _child(jobs_list[nxt], w, memory)
                os.close(w)
                running[r] = (nxt, pid, time.monotonic() + timeout, [])
            nxt += 1

    try:
        while out < n:
            start()
            if running:
                wait = max(0.0, min(end for _, _, end, _ in running.values()) - time.monotonic())
                ready, _, _ = select.select(list(running), [], [], wait)
                for fd in ready:
                    chunk = os.read(fd, 1 << 20)
                    if chunk:
                        running[fd][3].append(chunk)
                        continue
                    i, pid, _, data = running.pop(fd)
                    os.close(fd)
                    status = _wait(pid)
                    start()  # before this result is decoded, as in _map_zygote
                    done[i] = _collect_child(jobs_list[i], status, b"".join(data), memory)
                now = time.monotonic()
                for fd in [fd for fd, (_, _, end, _) in running.items() if end <= now]:
                    i, pid, _, _ = running.pop(fd)
                    _kill(pid)
                    os.close(fd)
                    done[i] = (_timed_out(jobs_list[i], timeout), [])
            while out in done:
                yield out, done.pop(out)
                out += 1
    finally:
        for fd, (_, pid, _, _) in running.items():
            _kill(pid)
            os.close(fd)


def _timed_out(job: Job, timeout: float) -> TUFacts:
    return _skipped(job, f"took longer than {timeout:g} s (REVIEWER_TU_TIMEOUT); skipped")


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)


def _wait(pid: int) -> tuple[int | None, int | None]:
    """Reap a child: (exit code, None) or (None, the signal that ended it)."""
    _, st = os.waitpid(pid, 0)
    if os.WIFSIGNALED(st):
        return None, os.WTERMSIG(st)
    return (os.WEXITSTATUS(st) if os.WIFEXITED(st) else None), None


def _collect_child(job: Job, status: tuple[int | None, int | None], data: bytes,
                   memory: int) -> tuple[TUFacts, list[str]]:
    code, sig = status
    if code == 0 and data:
        with contextlib.suppress(Exception), gc_paused():  # ~100,000 acyclic objects
            facts, includes = pickle.loads(data)
            if isinstance(facts, TUFacts) and isinstance(includes, list):
                return facts, includes
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        why = f"libclang crashed on this file ({name}); skipped"
    else:
        why = (f"reviewer's extractor failed on this file (out of memory within "
               f"{memory >> 20} MiB, REVIEWER_TU_MEMORY?); skipped")
    return _skipped(job, why), []


def _extract_bounded(job: Job, timeout: float, memory: int) -> JobResult:
    """One job in a forked child under the same limits as a local run, so that
    a TU that crashes libclang or runs too long is skipped with the same notice
    (and does not take a cluster worker down with it)."""
    from reviewer.extract import clangwalk  # noqa: F401  (loaded before forking)

    r, w = os.pipe()
    with sigint_held():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(r)
            _child(job, w, memory)
        os.close(w)
    end = time.monotonic() + timeout
    data: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                _kill(pid)
                return _timed_out(job, timeout), []
            chunk = os.read(r, 1 << 20)
            if not chunk:
                status = _wait(pid)
                pid = 0
                return _collect_child(job, status, b"".join(data), memory)
            data.append(chunk)
    except BaseException:
        if pid:
            _kill(pid)  # it ignores Ctrl-C: interrupted here, it would run on
        raise
    finally:
        os.close(r)


def _extract_with(job: Job, unsaved: dict[str, bytes], timeout: float, memory: int) -> JobResult:
    """A Dask task: the job with the run's unsaved files put back (they travel
    once per worker, not once per task), under the driver's limits."""
    path, args, root, mode, scope, _, _ = job
    return _extract_bounded((path, args, root, mode, scope, unsaved, ""), timeout, memory)


def _map_dask(
    jobs_list: list[Job], workers: int, scheduler: str | None
) -> Iterator[tuple[int, JobResult]]:
    # Imported here: dask is an optional extra, and the default path never needs it.
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UserError(
            "--executor dask needs Dask distributed: pip install 'qemu-reviewer[distributed]'"
        ) from None

    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="10s", set_as_default=False)
        else:
            # Loopback only, one thread per worker process. The scheduler always
            # serves HTTP (health checks; the dashboard if bokeh is installed):
            # on a free port, so that two runs do not fight over 8787. Logs
            # below CRITICAL stay off stderr: at shutdown a worker's heartbeat
            # can race the scheduler's exit and log an ERROR with a traceback
            # that means nothing; a task's own failure still comes back through
            # its future.
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
            )
            client = Client(cluster, set_as_default=False)
    except OSError as exc:  # includes TimeoutError: no scheduler at that address
        if cluster is not None:
            cluster.close()
        raise UserError(f"--scheduler {scheduler}: cannot reach a Dask scheduler ({exc})") from None
    try:
        # The limits are the driver's (its environment), not each worker's.
        timeout, memory = _limits()
        unsaved = jobs_list[0][5]
        shared: object = unsaved
        if unsaved:
            [shared] = client.scatter([unsaved], broadcast=True)
        # pure=False: the tasks are not deduplicated by hashing their arguments
        # (hashing every job's flags would cost more than it could save).
        futures = [
            client.submit(_extract_with, (*j[:5], {}, ""), shared, timeout, memory, pure=False)
            for j in jobs_list
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            # loop=: the client is not made the process-wide default (a library
            # call should leave no global behind), so as_completed is told which.
            for fut in as_completed(futures, loop=client.loop):
                result: JobResult = fut.result()
                yield index[fut.key], result
                fut.release()
        finally:
            client.cancel(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
