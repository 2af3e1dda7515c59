"""`reviewer check`: the pre-commit hook. Report only what the staged change
(or the change between two refs, for pre-push) introduces.

Both versions are read in place from the user's work tree, with the files that
differ from each version given to libclang as unsaved files (their content
from git's object store). Nothing is written to the repository, its index or
its work tree; the fact cache makes an unchanged TU free.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

from reviewer.analysis.engine import analyze
from reviewer.errors import UserError
from reviewer.extract.cache import default_cache_dir
from reviewer.extract.flags import plan_flags
from reviewer.extract.runner import RunResult, run
from reviewer.findings import Finding
from reviewer.model import ApiModel
from reviewer.scan import DEFAULT_PATHS, Version, _config_digest, _VersionCache
from reviewer.vcs.git import Repository

INDEX = ":index"
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass
class CheckResult:
    before: str
    after: str
    new: list[Finding] = field(default_factory=list)
    fixed: list[Finding] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    mode: str = ""
    degraded: list[tuple[str, int]] = field(default_factory=list)


def _version(repo: Repository, rev: str) -> tuple[dict[str, bytes], set[str]]:
    """(unsaved files, paths absent from this version) for reading version
    `rev` (a commit, or INDEX) in place from the work tree."""
    assert repo.root is not None
    if rev == INDEX:
        differs = repo.names("diff-files", "--name-only")
        spec = ":{}"
        absent = set(repo.names("diff-index", "--cached", "--name-only", "--diff-filter=D",
                                "HEAD")) if repo.has_head() else set()
    else:
        differs = repo.names("diff-index", "--name-only", rev)
        spec = rev + ":{}"
        absent = set()
    unsaved: dict[str, bytes] = {}
    for p in differs:
        data = repo.object(spec.format(p))
        if data is None:
            absent.add(p)
        else:
            unsaved[os.path.join(repo.root, p)] = data
    return unsaved, absent


def _analyse(root: str, scope: list[str], unsaved: dict[str, bytes], absent: set[str], *,
             build_dir: str | None, cache_dir: str | None, jobs: int | None, model: ApiModel,
             preview: bool, resource_dir: str | None,
             previous: dict[str, bytes | None] | None = None
             ) -> tuple[RunResult, list[Finding]]:
    paths = [p for p in scope if p not in absent and (
        os.path.exists(os.path.join(root, p)) or os.path.join(root, p) in unsaved)]
    plan = plan_flags(root, build_dir, resource_dir, cache_dir)
    result = run(paths, root=root, plan=plan, cache_dir=cache_dir, jobs=jobs, unsaved=unsaved,
                 progress=False, previous=previous)
    analysis = analyze(result.facts, model, root=root, sources=unsaved, preview=preview)
    return result, analysis.findings


def check(path: str, *, from_ref: str | None = None, to_ref: str | None = None,
          paths: list[str] | None = None, build_dir: str | None = None,
          cache_dir: str | None = None, jobs: int | None = None, model: ApiModel,
          preview: bool = False, resource_dir: str | None = None) -> CheckResult:
    repo = Repository(path)
    if repo.root is None:
        raise UserError(f"{path}: not in a git work tree (reviewer check runs in a checkout)")
    root = repo.root
    if bool(from_ref) != bool(to_ref):
        raise UserError("give both --from-ref and --to-ref (or neither, to check the index)")
    if from_ref and to_ref:
        before, after = repo.resolve(from_ref), repo.resolve(to_ref)
        changed = repo.names("diff-tree", "-r", "--name-only", before, after)
    else:
        before = "HEAD" if repo.has_head() else _EMPTY_TREE
        after = INDEX
        changed = repo.names("diff-index", "--cached", "--name-only", before)
    result = CheckResult(before, after, changed=changed)
    relevant = [p for p in changed if p.endswith((".c", ".h", "trace-events"))]
    if not relevant:
        return result  # nothing C-shaped is staged: nothing to say, and fast
    scope = list(paths) if paths else [
        *DEFAULT_PATHS, *(p for p in changed if p.endswith(".c") and p not in DEFAULT_PATHS)]
    analyse = functools.partial(_analyse, root, scope, build_dir=build_dir, cache_dir=cache_dir,
                                jobs=jobs, model=model, preview=preview,
                                resource_dir=resource_dir)
    # The committed side is the same on every run against one HEAD: its
    # findings are cached by its tree (pre-commit runs again and again). By
    # the tree, not the name: "HEAD" moves with every commit.
    vcache = _VersionCache(cache_dir or default_cache_dir(),
                           _config_digest(model, build_dir, preview, resource_dir) + ":check")
    key = vcache.key(repo.tree_of(before), scope) if before not in (_EMPTY_TREE, INDEX) else ""
    cached = vcache.get(key) if key else None
    if cached is not None:
        old = cached.findings_list
    else:
        u_before, a_before = _version(repo, before) if before != _EMPTY_TREE else ({}, set(changed))
        _, old = analyse(u_before, a_before)
        if key:
            vcache.put(key, Version(before, old, {}, {}, {}, {}, {}, {}, [], [], ""))
    u_after, a_after = _version(repo, after)
    # The committed version of the changed headers: TUs that include one but
    # cannot be affected by the change keep their facts (reviewer.extract.delta).
    # Files the change adds are there too (as None): one may be what an
    # #include now finds first.
    previous: dict[str, bytes | None] = {}
    if before != _EMPTY_TREE:
        for p in changed:
            data = repo.object(f"{before}:{p}")
            if p.endswith(".h") or data is None:
                previous[os.path.join(root, p)] = data
    res_after, new = analyse(u_after, a_after, previous=previous)
    b = {f.fingerprint: f for f in old}
    a = {f.fingerprint: f for f in new}
    result.new = sorted((a[k] for k in a.keys() - b.keys()), key=Finding.sort_key)
    result.fixed = sorted((b[k] for k in b.keys() - a.keys()), key=Finding.sort_key)
    result.problems = res_after.problems
    result.mode = res_after.plan.mode
    result.degraded = [(tu.file, tu.errors) for tu in res_after.facts.tus
                       if tu.degraded and tu.file in changed]
    return result
