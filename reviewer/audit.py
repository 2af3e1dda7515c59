"""`reviewer audit`: which device load hooks a thread (or a function) reaches,
with or without the BQL, and which of them need it.

The hooks are the functions stored in the struct fields the migration core
calls through (`SaveVMHandlers.load_state`, `VMStateDescription.pre_load` /
`post_load`, `VMStateInfo.get`, and any field the user names). For each hook
reached from the entry: the BQL state on arrival with the witness chain, and a
verdict, "needs the BQL" (with the evidence chain down to an assertion or an
API the model lists), "does not need it", or "unknown" (with why).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from reviewer.analysis.bql import HELD, NOT_HELD, Valuation
from reviewer.analysis.contexts import Contexts, State, Step
from reviewer.analysis.engine import RuleContext
from reviewer.analysis.program import FunctionInfo
from reviewer.errors import UserError

DEFAULT_HOOKS = (
    "SaveVMHandlers.load_state",
    "VMStateDescription.pre_load",
    "VMStateDescription.post_load",
    "VMStateInfo.get",
)
MAX_EVIDENCE_DEPTH = 10
UNRESOLVED_DEPTH = 2


@dataclass
class HookVerdict:
    function: str
    key: str
    file: str
    line: int
    hook: str  # the struct field it is called through
    arrival: str  # "held", "not held", "maybe held", "depends on bql_held"
    verdict: str  # "needs", "not needed", "unknown"
    evidence: list[str] = field(default_factory=list)  # why it needs the BQL, step by step
    why: str = ""  # why unknown
    chain: list[str] = field(default_factory=list)  # entry -> ... -> hook
    problem: bool = False  # needs the BQL and may arrive without it
    # Per context it is reached in ("thread mig/dst/main", "coroutine in main
    # loop", ...): "held", "not held" or "maybe held".
    contexts: dict[str, str] = field(default_factory=dict)

    @property
    def without(self) -> frozenset[str]:
        """The contexts in which it may arrive without the BQL."""
        return frozenset(c for c, a in self.contexts.items() if a != "held")

    @property
    def group(self) -> str:
        return os.path.dirname(self.file) or "."


@dataclass
class AuditResult:
    entry: str
    hooks: list[HookVerdict]
    fields: tuple[str, ...]
    degraded: list[tuple[str, int]]
    tus: int
    mode: str
    rev: str = ""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {"needs": 0, "not needed": 0, "unknown": 0, "problems": 0}
        for h in self.hooks:
            out[h.verdict] += 1
            out["problems"] += h.problem
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "entry": self.entry,
            "rev": self.rev,
            "mode": self.mode,
            "tus": self.tus,
            "fields": list(self.fields),
            "counts": self.counts(),
            "degraded": [{"file": f, "errors": e} for f, e in self.degraded],
            "hooks": [asdict(h) for h in self.hooks],
        }


def _roots(ctx: RuleContext, entry: str | None, thread: str | None
           ) -> tuple[str, list[tuple[State, Step]]]:
    p = ctx.program
    roots: list[tuple[State, Step]] = []
    if thread:
        for reg in p.registrations:
            if reg.context == "thread" and reg.thread_name == thread:
                roots.append((State(reg.target, f"thread {thread}", NOT_HELD),
                              Step(None, reg.site, "root:thread")))
        if not roots:
            names = sorted({r.thread_name for r in p.registrations if r.context == "thread"})
            raise UserError(f"no thread named {thread!r} in the analysed files (known: "
                            f"{', '.join(n for n in names if n) or 'none'})")
        return f"thread {thread}", roots
    assert entry is not None
    infos = p.find(entry)
    if not infos:
        raise UserError(f"--entry {entry}: no definition in the analysed files")
    for info in infos:
        ctx_name = f"entry {info.name}"
        if info.state_params:
            for v in (True, False):
                val = tuple(sorted((sp, v) for sp in info.state_params))
                roots.append((State(info.key, ctx_name, HELD if v else NOT_HELD, val),
                              Step(None, None, "root:entry")))
        else:
            for b in (HELD, NOT_HELD):
                roots.append((State(info.key, ctx_name, b), Step(None, None, "root:entry")))
    return f"{entry}()", roots


def _evidence(ctx: RuleContext, key: str, depth: int = 0,
              seen: set[str] | None = None) -> list[str]:
    """Why a function needs the BQL: the shortest chain of steps down to an
    assertion or an API the model lists (breadth first: the first chain found
    depth first can run through a dozen helpers when a direct one exists);
    [] when it does not."""
    seen = seen if seen is not None else set()
    queue: deque[tuple[str, list[str]]] = deque([(key, [])])
    while queue:
        k, path = queue.popleft()
        if k in seen or depth + len(path) > MAX_EVIDENCE_DEPTH:
            continue
        seen.add(k)
        info = ctx.program.functions[k]
        flow = ctx.bql.flow(k, NOT_HELD)
        m = ctx.model
        later: list[tuple[str, list[str]]] = []
        for e in flow.events:
            if e.kind != "requires_bql":
                continue
            where = f"{info.fact.file}:{e.line}"
            if e.call < 0:
                return [*path, f"{info.name}() has {e.detail} ({where})"]
            c = info.tu.calls[e.call]
            if c.callee in m.requires_bql or c.callee.startswith(m.requires_bql_prefixes):
                return [*path, f"{info.name}() calls {c.callee}() ({where}), which needs the BQL"]
            if m.bql_op(c.callee) == "cond_wait":
                return [*path, f"{info.name}() waits in {c.callee}() ({where}), which needs "
                               "the BQL"]
            callee = ctx.program.resolve_name(c.callee, c.caller_file, c.callee_key)
            if callee and callee not in seen:
                later.append((callee, [*path, f"{info.name}() calls {c.callee}() ({where})"]))
        queue.extend(later)
    return _object_evidence(ctx, ctx.program.functions[key], depth, set())


def _object_evidence(ctx: RuleContext, info: FunctionInfo, depth: int,
                     seen: set[str]) -> list[str]:
    """A function that loads a global object (`vmstate_load_state(f,
    &vmstate_foo, ...)`) runs that object's hooks: it needs the BQL when one of
    the hooks the callee calls on it (or on what it contains) does."""
    p = ctx.program
    for site in sorted(info.sites.values(), key=lambda s: s.call.line):
        c = site.call
        if not c.obj_args or c.via != "direct":
            continue
        callee = p.resolve_name(c.callee, c.caller_file, c.callee_key)
        carrying = p.carrying.get(callee, frozenset()) if callee else frozenset()
        if not carrying:
            continue
        slots = p.dispatched(callee)
        for i, obj in c.obj_args:
            if i not in carrying:
                continue
            for o in sorted(p.closure(obj)):
                for slot, fns in sorted(p.obj_slots.get(o, {}).items()):
                    if slot not in slots:
                        continue
                    for fk in sorted(fns):
                        rest = _evidence(ctx, fk, depth + 1, seen)
                        if rest:
                            name = obj.rsplit(":", 1)[-1]
                            return [f"{info.name}() loads {name} with {c.callee}() "
                                    f"({info.fact.file}:{c.line}), which calls its "
                                    f"{slot.split('.')[-1]} {p.functions[fk].name}()", *rest]
    return []


def _unresolved(ctx: RuleContext, key: str) -> str:
    """An indirect call (or a callee in a TU that did not parse) near the hook,
    which keeps "does not need the BQL" from being proven; "" if none."""
    p = ctx.program
    queue: deque[tuple[str, int]] = deque([(key, 0)])
    seen = {key}
    while queue:
        k, d = queue.popleft()
        info = p.functions[k]
        if info.tu.degraded:
            return f"{info.name}() is in {info.tu.file}, which parsed with errors"
        for site in info.sites.values():
            keys, why = p.callees(site)
            if why and site.call.via != "direct":
                return f"{info.name}() calls through {site.call.callee} ({why})"
            if d < UNRESOLVED_DEPTH:
                for nk in keys:
                    if p.functions[nk].name in ctx.model.opaque_safe:
                        continue
                    if nk not in seen:
                        seen.add(nk)
                        queue.append((nk, d + 1))
    return ""


def audit(ctx: RuleContext, *, entry: str | None = None, thread: str | None = None,
          fields: tuple[str, ...] = DEFAULT_HOOKS, missing_ok: bool = False
          ) -> tuple[str, list[HookVerdict]]:
    """Hooks reached from `entry` or `thread`, or from every entry point of the
    model when both are None. missing_ok: an entry or thread that does not
    exist (a revision before the series added it) reaches nothing."""
    runs: list[tuple[Valuation, Contexts]] = []
    if entry is None and thread is None:
        label = "every entry point"
        runs.append(((), ctx.contexts))
    else:
        try:
            label, roots = _roots(ctx, entry, thread)
        except UserError:
            if not missing_ok:
                raise
            return (f"thread {thread}" if thread else f"{entry}()"), []
        # One propagation per valuation of the entry's BQL-state parameters:
        # a state reached from both would otherwise be credited to one of them,
        # and "held exactly when bql_held" could not be told from "maybe held".
        by_val: dict[Valuation, list[tuple[State, Step]]] = {}
        for root in roots:
            by_val.setdefault(root[0].val, []).append(root)
        for val, group in sorted(by_val.items()):
            runs.append((val, Contexts(ctx.program, ctx.bql, roots=group)))
    arrivals: dict[tuple[str, str], list[tuple[Valuation, State, Contexts]]] = {}
    for val, cx in runs:
        for st, step in cx.steps.items():
            if step.how == "field" and step.site is not None and step.site.call.callee in fields:
                arrivals.setdefault((st.fn, step.site.call.callee), []).append((val, st, cx))
    out: list[HookVerdict] = []
    for (key, hook), reached in sorted(arrivals.items()):
        info = ctx.program.functions[key]
        bits = 0
        by_val_bits: dict[Valuation, int] = {}
        for val, s, _ in reached:
            bits |= s.bql
            by_val_bits[val] = by_val_bits.get(val, 0) | s.bql
        if bits == HELD:
            arrival = "held"
        elif bits == NOT_HELD:
            arrival = "not held"
        elif len(by_val_bits) > 1 and all(
            len(val) == 1 and m == (HELD if val[0][1] else NOT_HELD)
            for val, m in by_val_bits.items()
        ):
            # Held exactly when the entry was told it holds the BQL.
            arrival = f"depends on {next(iter(by_val_bits))[0][0]}"
        else:
            arrival = "maybe held"
        evidence = _evidence(ctx, key)
        why = "" if evidence else _unresolved(ctx, key)
        verdict = "needs" if evidence else ("unknown" if why else "not needed")
        per_ctx: dict[str, int] = {}
        for _, s, _ in reached:
            per_ctx[s.ctx] = per_ctx.get(s.ctx, 0) | s.bql
        contexts = {c: "held" if m == HELD else "not held" if m == NOT_HELD else "maybe held"
                    for c, m in sorted(per_ctx.items())}
        # The witness: a path that arrives without the BQL when there is one.
        top = min((s.bql != NOT_HELD, cx.length(s)) for _, s, cx in reached)
        chain = min(cx.chain(s)[0] for _, s, cx in reached
                    if (s.bql != NOT_HELD, cx.length(s)) == top)
        out.append(HookVerdict(
            function=info.name, key=key, file=info.fact.file, line=info.fact.line, hook=hook,
            arrival=arrival, verdict=verdict, evidence=evidence, why=why,
            chain=list(chain),
            problem=verdict == "needs" and arrival != "held",
            contexts=contexts,
        ))
    out.sort(key=lambda h: (not h.problem, h.verdict != "needs", h.file, h.line))
    return label, out


@dataclass
class HookChange:
    function: str
    file: str
    hook: str
    before: str  # arrival before, or "not reached"
    after: str
    verdict: str
    # Contexts in which it may arrive without the BQL, after and not before
    # (the series' question: a hook the main loop used to run with the BQL that
    # a new thread now runs without it), and the other way round.
    now_without: list[str] = field(default_factory=list)
    no_longer_without: list[str] = field(default_factory=list)

    @property
    def lost_bql(self) -> bool:
        return bool(self.now_without) or (self.before == "held" and self.after != "held")


def tree_paths(root: str, entries: dict[str, Any] | None) -> list[str]:
    """The whole tree: every TU of the compile database under the source root,
    or every .c file in no-build mode; tests, tools and subprojects left out."""
    skip = ("tests/", "contrib/", "qga/", "subprojects/", "roms/", "build/", "scripts/",
            "docs/", "python/", "pc-bios/")
    if entries:
        rels = {os.path.relpath(p, root) for p in entries if (p + os.sep).startswith(root + os.sep)}
    else:
        rels = {os.path.relpath(os.path.join(d, f), root)
                for d, dirs, files in os.walk(root)
                for f in files if f.endswith(".c")}
    return sorted(r for r in rels if r.endswith(".c") and not r.startswith(skip))


def diff(before: list[HookVerdict], after: list[HookVerdict]) -> list[HookChange]:
    b = {(h.key, h.hook): h for h in before}
    a = {(h.key, h.hook): h for h in after}
    out: list[HookChange] = []
    for k in sorted(a.keys() | b.keys()):
        hb, ha = b.get(k), a.get(k)
        before_arr = hb.arrival if hb else "not reached"
        after_arr = ha.arrival if ha else "not reached"
        wb = hb.without if hb else frozenset()
        wa = ha.without if ha else frozenset()
        if before_arr == after_arr and wb == wa:
            continue
        h = ha or hb
        assert h is not None
        out.append(HookChange(h.function, h.file, h.hook, before_arr, after_arr, h.verdict,
                              sorted(wa - wb), sorted(wb - wa)))
    out.sort(key=lambda c: (not c.lost_bql, c.verdict != "needs", c.file, c.function))
    return out


def run_audit(root: str, *, rev: str | None = None, entry: str | None = None,
              thread: str | None = None, fields: tuple[str, ...] = DEFAULT_HOOKS,
              paths: list[str] | None = None, build_dir: str | None = None,
              cache_dir: str | None = None, jobs: int | None = None, model: Any = None,
              resource_dir: str | None = None, progress: bool | None = None,
              executor: Any = None, everything: bool = False,
              missing_ok: bool = False) -> AuditResult:
    """Extract (cached, in parallel), analyse and audit a tree, or a revision of
    it materialised outside the repository."""
    from reviewer.analysis.engine import analyze
    from reviewer.extract.cache import default_cache_dir
    from reviewer.extract.flags import plan_flags
    from reviewer.extract.runner import run
    from reviewer.scan import _scratch, unused_dirs
    from reviewer.vcs.git import Repository

    if entry and thread:
        raise UserError("give --entry or --thread, not both")
    cache = cache_dir or default_cache_dir()

    def on(tree: str, source_root: str | None) -> AuditResult:
        plan = plan_flags(tree, build_dir, resource_dir, cache, source_root=source_root)
        if paths:
            todo = list(paths)
        elif plan.entries and source_root:
            todo = tree_paths(source_root, plan.entries)
        else:
            todo = tree_paths(tree, plan.entries)
        result = run(todo, root=tree, plan=plan, cache_dir=cache, jobs=jobs, progress=progress,
                     executor=executor)
        analysis = analyze(result.facts, model, root=tree, rules=[])
        assert analysis.context is not None
        default = None if everything else "mig/dst/main"
        label, hooks = audit(analysis.context, entry=entry,
                             thread=thread if (thread or entry) else default,
                             fields=fields, missing_ok=missing_ok)
        degraded = [(tu.file, tu.errors) for tu in result.facts.tus if tu.degraded]
        return AuditResult(label, hooks, fields, degraded, len(result.facts.tus), plan.mode,
                           rev or "")

    if rev is None:
        return on(os.path.abspath(root), None)
    repo = Repository(root)
    sha = repo.resolve(rev)
    with _scratch(cache, repo, "audit-" + sha[:12]) as tree:
        repo.archive_to(sha, tree, unused_dirs(list(paths or [])), jobs or os.cpu_count() or 1)
        out = on(tree, repo.root)
    out.rev = rev
    return out
