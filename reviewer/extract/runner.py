"""Turn paths into facts: find the TUs, give each its flags, use the cache, run
libclang in parallel, and say what could not be read."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from reviewer.errors import UserError
from reviewer.extract.cache import ContentHashes, FactCache
from reviewer.extract.facts import FactSet, TUFacts
from reviewer.extract.flags import FlagPlan, plan_flags


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
            if not found:
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


def _extract_job(
    job: tuple[str, list[str], str, str, tuple[str, ...], dict[str, bytes]],
) -> tuple[TUFacts, list[str]]:
    # Imported here, not at the top: loading libclang costs start-up time that a
    # fully cached run does not need.
    from reviewer.extract import clangwalk

    path, args, root, mode, scope, unsaved = job
    try:
        return clangwalk.extract(path, args, root=root, mode=mode, scope=scope, unsaved=unsaved)
    except clangwalk.ParseFailure as exc:
        rel = os.path.relpath(path, root)
        return TUFacts(file=rel, mode=mode, failed=str(exc)), []


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
) -> RunResult:
    root = os.path.normpath(os.path.abspath(root))
    if not os.path.isdir(root):
        raise UserError(f"{root}: not a directory; give the top of a QEMU tree with --root")
    inputs = collect(paths, root)
    if scope is not None:
        inputs.scope = scope
    if plan is None:
        plan = plan_flags(root, build_dir, resource_dir, cache_dir)
    cache = FactCache(cache_dir, enabled=use_cache)
    hashes = ContentHashes(unsaved)
    problems = list(inputs.problems) + plan.notes
    results: dict[str, TUFacts] = {}
    todo: list[tuple[str, str]] = []  # (path, cache key)
    for path in inputs.tus:
        rel = os.path.relpath(path, root)
        if plan.mode == "build" and plan.entries and plan.entry_for(path) is None:
            problems.append(f"{rel}: not in compile_commands.json; read with no-build flags")
        _check_text(path, unsaved, problems, rel)
        key = cache.key(rel, hashes(path), plan.digest(path), inputs.scope)
        hit = cache.get(key, hashes)
        if hit is not None:
            results[path] = hit
        else:
            todo.append((path, key))
    mode_of = {p: ("build" if plan.entry_for(p) is not None else "nobuild") for p, _ in todo}
    jobs_list = [
        (p, plan.args_for(p), root, mode_of[p], inputs.scope, dict(unsaved or {}))
        for p, _ in todo
    ]
    keys = dict(todo)
    for (facts, includes), (path, _) in zip(
        _map(jobs_list, jobs, progress), todo, strict=True
    ):
        results[path] = facts
        if not facts.failed:
            cache.put(keys[path], facts, {inc: hashes(inc) for inc in [path, *includes]})
        else:
            problems.append(f"{facts.file}: {facts.failed}")
    if cache.rejected:
        problems.append(f"cache: {cache.rejected} corrupted entries dropped and rebuilt")
    if cache.warning:
        problems.append(cache.warning)
    tus = [results[p] for p in inputs.tus]
    cached = len(inputs.tus) - len(todo)
    return RunResult(FactSet(tus), plan, problems, parsed=len(todo), cached=cached)


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
    jobs_list: list[tuple[str, list[str], str, str, tuple[str, ...], dict[str, bytes]]],
    jobs: int | None,
    progress: bool | None,
) -> Iterator[tuple[TUFacts, list[str]]]:
    """Extract the jobs' TUs, yielding results in order as they come: the caller
    writes each cache entry while the workers are still parsing, instead of all
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
        if workers == 1:
            for j in jobs_list:
                yield _extract_job(j)
                tick()
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                for r in pool.map(_extract_job, jobs_list, chunksize=1):
                    yield r
                    tick()
    finally:
        if prog is not None:
            prog.stop()
