"""Build git repositories from fixture series (the demo and the tests).

A series directory holds numbered steps (`0-base/`, `1-.../`, ...). Each step is
an overlay of files on the previous tree plus a COMMIT_MSG; an optional DELETE
file lists paths to remove. The first step also receives the stub headers from
fixtures/include/ under include/.

These repositories are ours: commits are made with a fixed identity given on
the command line, never with (or to) the user's git configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from reviewer.errors import UserError
from reviewer.resources import fixtures_dir

IDENTITY = {
    "GIT_AUTHOR_NAME": "Demo Author",
    "GIT_AUTHOR_EMAIL": "demo.author@example.org",
    "GIT_COMMITTER_NAME": "Demo Author",
    "GIT_COMMITTER_EMAIL": "demo.author@example.org",
    "GIT_AUTHOR_DATE": "2025-10-22T19:26:12+00:00",
    "GIT_COMMITTER_DATE": "2025-10-22T19:26:12+00:00",
}


def _git(repo: str, *args: str) -> str:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GIT_")
    }
    env.update(IDENTITY)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["HOME"] = repo  # no user config leaks in
    try:
        out = subprocess.run(
            ["git", "-c", "init.defaultBranch=master", "-c", "commit.gpgsign=false", *args],
            cwd=repo, env=env, capture_output=True, text=True, check=True,
        )
    except FileNotFoundError:
        raise UserError("git is not installed; install git (apt-get install git)") from None
    except subprocess.CalledProcessError as exc:
        raise UserError(f"git {args[0]} failed in {repo}: {exc.stderr.strip()}") from None
    return out.stdout.strip()


def series_steps(name: str) -> list[str]:
    base = os.path.join(fixtures_dir(), "series", name)
    if not os.path.isdir(base):
        raise UserError(f"no fixture series named {name!r}")
    return [os.path.join(base, d) for d in sorted(os.listdir(base)) if d[:1].isdigit()]


def build_series_repo(dest: str, name: str = "threadify") -> list[str]:
    """Create a git repository at dest with one commit per step; return the SHAs."""
    if os.path.exists(dest) and os.listdir(dest):
        raise UserError(f"{dest}: exists and is not empty; choose an empty directory")
    os.makedirs(dest, exist_ok=True)
    _git(dest, "init", "-q")
    shas: list[str] = []
    for i, step in enumerate(series_steps(name)):
        if i == 0:
            inc = os.path.join(dest, "include")
            os.makedirs(inc, exist_ok=True)
            shutil.copy(os.path.join(fixtures_dir(), "include", "qemu-stubs.h"), inc)
        for d, _, files in os.walk(step):
            for f in files:
                if f in ("COMMIT_MSG", "DELETE"):
                    continue
                src = os.path.join(d, f)
                rel = os.path.relpath(src, step)
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                shutil.copy(src, os.path.join(dest, rel))
        delete = os.path.join(step, "DELETE")
        if os.path.isfile(delete):
            with open(delete, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        os.unlink(os.path.join(dest, line.strip()))
        _git(dest, "add", "-A")
        with open(os.path.join(step, "COMMIT_MSG"), encoding="utf-8") as fh:
            msg = fh.read()
        _git(dest, "commit", "-q", "-m", msg)
        shas.append(_git(dest, "rev-parse", "HEAD"))
    return shas
