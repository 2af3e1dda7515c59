"""Read-only access to the user's repository.

Everything here only reads: rev-parse, rev-list, cat-file, diff-tree, archive.
Nothing runs a command that could refresh the index, move HEAD, create a
worktree or write config (no `git status`, no `git worktree`, no checkout).
Trees are materialised outside the repository, in a scratch directory that the
caller owns and removes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
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
        )

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

    def archive_to(self, sha: str, dest: str, exclude: tuple[str, ...] = ()) -> None:
        """Write the tree of a commit into dest (which must be empty), without
        the top-level directories in `exclude`."""
        fd, tar_path = tempfile.mkstemp(suffix=".tar", dir=os.path.dirname(dest))
        os.close(fd)
        spec = ["--", ".", *(f":(exclude){d}" for d in exclude)] if exclude else []
        try:
            with open(tar_path, "wb") as fh:
                proc = subprocess.run(
                    ["git", f"--git-dir={self.git_dir}", "archive", "--format=tar", sha, *spec],
                    stdout=fh, stderr=subprocess.PIPE, check=False,
                )
            if proc.returncode != 0:
                raise UserError(f"git archive {sha[:12]}: {proc.stderr.decode(errors='replace')}")
            with tarfile.open(tar_path) as tar:
                # Regular files and directories only: links and devices from a
                # tree under review are never recreated (nothing C needs them).
                members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
                tar.extractall(dest, members=members, filter="data")
        finally:
            os.unlink(tar_path)


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
