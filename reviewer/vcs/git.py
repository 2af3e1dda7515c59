"""Read-only access to the user's repository.

Everything here only reads: rev-parse, rev-list, cat-file, diff-tree, and
read-tree/checkout-index through an index file of its own in the scratch area.
Nothing runs a command that could refresh the index, move HEAD, create a
worktree or write config (no `git status`, no `git worktree`, no checkout).
Trees are materialised outside the repository, in a scratch directory that the
caller owns and removes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import git

from reviewer.errors import UserError


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parent: str
    subject: str
    author: str
    author_email: str
    date: str
    message: str
    is_merge: bool
    tree: str = ""  # the id of its tree: what an analysis of it depends on


@dataclass(frozen=True)
class Change:
    status: str  # A, M, D, R, T
    path: str  # new path (old path for deletions)
    old_path: str


def max_commits() -> int:
    """The most commits one scan reviews (REVIEWER_MAX_COMMITS, default 1000):
    a wrong base (master..HEAD on a stale master) asks for hours of work."""
    try:
        return max(1, int(os.environ.get("REVIEWER_MAX_COMMITS", "") or 1000))
    except ValueError:
        return 1000


class Repository:
    def __init__(self, path: str) -> None:
        try:
            self.repo = git.Repo(path, search_parent_directories=True)
        except git.exc.NoSuchPathError:
            raise UserError(f"{path}: no such directory") from None
        except git.exc.InvalidGitRepositoryError:
            raise UserError(
                f"{path}: not a git repository (run reviewer in a QEMU checkout, or pass --repo)"
            ) from None
        self.git_dir = str(self.repo.git_dir)
        tree = self.repo.working_tree_dir if not self.repo.bare else None
        self.root: str | None = str(tree) if tree is not None else None

    def _git(self, *args: str) -> str:
        try:
            out: str = self.repo.git.execute(
                ["git", "-c", "core.quotepath=off", *args], stdout_as_string=True
            )
        except git.exc.GitCommandError as exc:
            msg = (exc.stderr or str(exc)).strip().replace("\n", " ")
            raise UserError(f"git {args[0]}: {msg[:300]}") from None
        return out

    def resolve(self, rev: str) -> str:
        try:
            return self._git("rev-parse", "--verify", "--quiet", "--end-of-options",
                             f"{rev}^{{commit}}").strip()
        except UserError:
            hint = ("; this is a shallow clone (git fetch --unshallow)"
                    if os.path.exists(os.path.join(self.git_dir, "shallow")) else "")
            raise UserError(f"unknown revision {rev!r}: give a commit, branch or tag{hint}"
                            ) from None

    def default_range(self) -> str:
        try:
            upstream = self._git("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
            if upstream.strip():
                return f"{upstream.strip()}..HEAD"
        except UserError:
            pass
        return "HEAD~1..HEAD"

    def commits(self, rng: str) -> tuple[str, list[CommitInfo]]:
        """The commits of a range A..B, oldest first, and the base (A)."""
        if ".." in rng and "..." not in rng:
            a, _, b = rng.partition("..")
            base = self.resolve(a or "HEAD")
            tip = self.resolve(b or "HEAD")
        else:
            tip = self.resolve(rng)
            base = self.resolve(f"{rng}~1") if self._has_parent(tip) else ""
        if not base:
            raise UserError(f"{rng}: the first commit has no parent to compare with")
        shas = self._git("rev-list", "--reverse", "--topo-order", f"{base}..{tip}").split()
        limit = max_commits()
        if len(shas) > limit:
            raise UserError(
                f"{rng}: {len(shas)} commits, more than {limit} (is the base right? "
                "a series is origin/master..HEAD; REVIEWER_MAX_COMMITS raises the limit)")
        return base, [self.info(s) for s in shas]

    def _has_parent(self, sha: str) -> bool:
        return len(self.repo.commit(sha).parents) > 0

    def info(self, sha: str) -> CommitInfo:
        c = self.repo.commit(sha)
        msg = c.message if isinstance(c.message, str) else c.message.decode("utf-8", "replace")
        return CommitInfo(
            sha=c.hexsha,
            parent=c.parents[0].hexsha if c.parents else "",
            subject=msg.splitlines()[0] if msg else "",
            author=str(c.author.name or ""),
            author_email=str(c.author.email or ""),
            date=c.authored_datetime.isoformat(),
            message=msg,
            is_merge=len(c.parents) > 1,
            tree=c.tree.hexsha,
        )

    def tree_of(self, sha: str) -> str:
        return str(self.repo.commit(sha).tree.hexsha)

    def changes(self, old: str, new: str) -> list[Change]:
        out = self._git("diff-tree", "-r", "-M", "--no-commit-id", "--name-status", "-z", old, new)
        parts = out.split("\0")
        changes: list[Change] = []
        i = 0
        while i < len(parts) - 1:
            status = parts[i]
            if not status:
                i += 1
                continue
            if status[0] in "RC":
                changes.append(Change(status[0], parts[i + 2], parts[i + 1]))
                i += 3
            else:
                changes.append(Change(status[0], parts[i + 1], parts[i + 1]))
                i += 2
        return changes

    def blob(self, sha: str, path: str) -> bytes | None:
        return self.object(f"{sha}:{path}")

    def object(self, spec: str) -> bytes | None:
        """A blob by git's spec (`REV:path`, or `:path` for the index), or None."""
        try:
            # strip_newline_in_stdout defaults to True in GitPython: it would
            # drop a file's final newline.
            data: bytes = self.repo.git.execute(
                ["git", "cat-file", "blob", spec], stdout_as_string=False,
                strip_newline_in_stdout=False,
            )
        except git.exc.GitCommandError:
            return None
        return data

    def names(self, *args: str) -> list[str]:
        """The NUL-separated path list a read-only command prints (`-z` added);
        names that are not UTF-8 survive as surrogate escapes."""
        try:
            out: bytes = self.repo.git.execute(
                ["git", "-c", "core.quotepath=off", *args, "-z"], stdout_as_string=False)
        except git.exc.GitCommandError as exc:
            msg = (exc.stderr or str(exc)).strip().splitlines()
            raise UserError(f"git {args[0]}: {msg[-1] if msg else 'failed'}") from None
        return [x for x in out.decode("utf-8", "surrogateescape").split("\0") if x]

    def patch_mail(self, sha: str) -> bytes | None:
        """A commit as `git format-patch` would mail it."""
        try:
            data: bytes = self.repo.git.execute(
                ["git", "format-patch", "-1", "--stdout", "--no-signature", sha],
                stdout_as_string=False, strip_newline_in_stdout=False)
        except git.exc.GitCommandError:
            return None
        return data

    def config(self, key: str) -> str:
        """A configuration value as the user's git sees it ("" when unset)."""
        try:
            return self._git("config", "--get", key).strip()
        except UserError:
            return ""

    def has_head(self) -> bool:
        try:
            self._git("rev-parse", "--verify", "--quiet", "HEAD")
        except UserError:
            return False
        return True

    def archive_to(self, sha: str, dest: str, exclude: tuple[str, ...] = (),
                   workers: int = 1) -> None:
        """Write the tree of a commit into dest (which must be empty), without
        the top-level directories in `exclude`: regular files only (links,
        submodules and devices of a tree under review are never recreated;
        nothing C needs them).

        git itself writes the files, once: read-tree into an index file of our
        own (the repository's index is never read or written), then
        checkout-index of the chosen paths into dest. Half the time of
        extracting a `git archive` tarball, which wrote every byte twice."""
        os.makedirs(dest, exist_ok=True)  # git needs the work tree to exist
        fd, index = tempfile.mkstemp(suffix=".index", dir=os.path.dirname(dest))
        os.close(fd)
        os.unlink(index)  # read-tree creates it
        env = {**os.environ, "GIT_INDEX_FILE": index}
        base = ["git", f"--git-dir={self.git_dir}", f"--work-tree={dest}",
                "-c", "core.autocrlf=false", "-c", f"checkout.workers={max(1, workers)}"]
        drop = tuple(d + "/" for d in exclude)
        try:
            _git_bytes(base, ["read-tree", sha], env)
            listing = _git_bytes(base, ["ls-files", "--stage", "-z"], env)
            paths = []
            for entry in listing.split(b"\0"):
                meta, _, path = entry.partition(b"\t")
                if meta[:6] in (b"100644", b"100755") and not path.decode(
                        errors="surrogateescape").startswith(drop):
                    paths.append(path)
            _git_bytes(base, ["checkout-index", "--stdin", "-z", "-f"], env,
                       b"".join(p + b"\0" for p in paths))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(index)


def _git_bytes(base: list[str], args: list[str], env: dict[str, str], stdin: bytes = b"") -> bytes:
    proc = subprocess.run([*base, *args], input=stdin, env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().replace("\n", " ")
        raise UserError(f"git {args[0]}: {msg[:300]}")
    return proc.stdout


_TRAILER_MSGID = re.compile(r"^Message-I[Dd]:\s*(<[^>\s]+>)", re.M)
_TRAILER_LINK = re.compile(r"^Link:\s*https?://\S*?/(?:r/)?<?([^/\s<>]+@[^/\s<>]+?)>?/?\s*$",
                           re.M)


def message_id_of(commit_message: str) -> str:
    """The mail a commit came from, by its Message-ID: or Link: trailer."""
    m = _TRAILER_MSGID.search(commit_message)
    if m:
        return m.group(1)
    m = _TRAILER_LINK.search(commit_message)
    return f"<{m.group(1)}>" if m else ""


@contextmanager
def scratch_dir(base: str) -> Iterator[str]:
    """A private directory under the cache, removed afterwards whatever happens
    (an exception, Ctrl-C)."""
    os.makedirs(base, exist_ok=True)
    d = tempfile.mkdtemp(prefix="scan-", dir=base)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
