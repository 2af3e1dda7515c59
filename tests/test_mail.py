"""Series from the list, reply drafts, b4's check protocol, and the pre-commit
hook, with the real tools: git format-patch / am / mailinfo, pre-commit."""

from __future__ import annotations

import email
import email.policy
import glob
import json
import mailbox
import os
import shutil
import subprocess
import sys

import pytest

from reviewer.vcs.series import build_series_repo

from .test_cli import _one_line_error, run_cli
from .test_scan import git, repo_state

SCOPE = ["--paths", "migration", "--paths", "hw"]


@pytest.fixture(scope="module")
def mailed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A source repository with the fixture series, the series mailed as an
    mbox, and a reviewer's repository at the series' base."""
    top = tmp_path_factory.mktemp("mail")
    src = str(top / "src")
    shas = build_series_repo(src)
    out = str(top / "patches")
    git(src, "format-patch", "-q", "--cover-letter", "--thread", "-o", out,
        f"{shas[0]}..{shas[-1]}", "--to=Maintainer <maint@example.org>",
        "--cc=qemu-devel@nongnu.org", "--subject-prefix=PATCH")
    files = sorted(glob.glob(os.path.join(out, "*.patch")))
    mbox = str(top / "series.mbox")
    with open(mbox, "wb") as fh:
        for f in reversed(files):  # any order: the cover letter last
            with open(f, "rb") as p:
                fh.write(p.read())
    reviewer_repo = str(top / "reviewer")
    subprocess.run(["git", "clone", "-q", src, reviewer_repo], check=True)
    git(reviewer_repo, "checkout", "-q", "--detach", shas[0])
    git(reviewer_repo, "config", "user.name", "Rita Reviewer")
    git(reviewer_repo, "config", "user.email", "rita@example.org")
    return {"mbox": mbox, "repo": reviewer_repo, "patches": out, "top": str(top),
            "base": shas[0]}


def test_scan_mbox_maps_findings_to_messages(mailed: dict[str, str]) -> None:
    before = repo_state(mailed["repo"])
    r = run_cli("scan", "--repo", mailed["repo"], "--mbox", mailed["mbox"], *SCOPE, "-f", "json",
                "--cache-dir", os.path.join(mailed["top"], "c1"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    ids = [p["message_id"] for p in doc["patches"]]
    with open(mailed["mbox"], "rb") as fh:
        text = fh.read().decode()
    assert all(i and i in text for i in ids)
    assert [p["counts"]["new"] for p in doc["patches"]] == [1, 7, 0]
    assert repo_state(mailed["repo"]) == before


def test_reply_drafts_thread_and_pass_git_mailinfo(mailed: dict[str, str]) -> None:
    before = repo_state(mailed["repo"])
    out = os.path.join(mailed["top"], "drafts.mbox")
    r = run_cli("reply", "--repo", mailed["repo"], "--mbox", mailed["mbox"], *SCOPE, "--cover",
                "--output", out, "--cache-dir", os.path.join(mailed["top"], "c2"))
    assert r.returncode == 0, r.stderr
    assert repo_state(mailed["repo"]) == before
    originals = {}
    for m in mailbox.mbox(mailed["mbox"]):
        originals[m["Message-ID"].strip()] = m
    drafts = list(mailbox.mbox(out))
    assert len(drafts) == 3  # the cover letter and the two patches with new findings
    for d in drafts:
        parent = originals[d["In-Reply-To"].strip()]
        assert d["References"].split()[-1] == d["In-Reply-To"].strip()
        assert d["Subject"] == "Re: " + " ".join(parent["Subject"].split())
        assert d["From"] == "Rita Reviewer <rita@example.org>"
        assert "qemu-devel@nongnu.org" in d["Cc"] and "maint@example.org" in d["Cc"]
        assert email.utils.parsedate_to_datetime(d["Date"]) is not None
        body = d.get_payload(decode=True).decode()
        assert body.startswith("On ")
        for line in body.splitlines():
            if not line.startswith((">", "    ")):
                assert len(line) <= 72, line
        # git's own parser reads it back.
        r = subprocess.run(["git", "mailinfo", os.path.join(mailed["top"], "msg"),
                            os.path.join(mailed["top"], "patch")], input=d.as_bytes(),
                           capture_output=True, check=False)
        assert r.returncode == 0, r.stderr
        info = r.stdout.decode()
        assert "Author: Rita Reviewer" in info and "Subject:" in info
    second = drafts[2].get_payload(decode=True).decode()
    # Each comment sits under the quoted line it is about.
    lines = second.splitlines()
    i = next(n for n, x in enumerate(lines)
             if "qemu_coroutine_self();" in x and x.startswith("> +"))
    assert lines[i + 1] == "" and "needs a coroutine" in lines[i + 2]
    assert "> [...]" in second


def test_b4_check_protocol(mailed: dict[str, str]) -> None:
    patches = sorted(glob.glob(os.path.join(mailed["patches"], "*.patch")))
    results = []
    for p in patches:
        with open(p, "rb") as fh:
            r = subprocess.run([sys.executable, "-m", "reviewer.cli", "b4-check", "--repo",
                                mailed["repo"], "--cache-dir", os.path.join(mailed["top"], "c3"),
                                "--base", mailed["base"]],
                               stdin=fh, capture_output=True, check=False)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert isinstance(out, list)
        for item in out:
            assert set(item) <= {"tool", "status", "summary", "url", "details"}
            assert item["tool"] == "reviewer" and item["status"] in ("pass", "warn", "fail")
        results.append(out)
    assert results[0] == []  # the cover letter
    assert results[1][0]["status"] == "fail" and "QM005" in results[1][0]["details"]


def test_bad_mail_input(mailed: dict[str, str], tmp_path: object) -> None:
    d = str(tmp_path)
    empty = os.path.join(d, "empty.mbox")
    open(empty, "w").close()
    common = ["scan", "--repo", mailed["repo"], "--cache-dir", os.path.join(d, "c")]
    assert "empty file" in _one_line_error(run_cli(*common, "--mbox", empty))
    notmail = os.path.join(d, "notes.txt")
    with open(notmail, "w") as fh:
        fh.write("just some notes\n")
    assert "no patches found" in _one_line_error(run_cli(*common, "--mbox", notmail))
    # A missing patch.
    partial = os.path.join(d, "partial.mbox")
    files = sorted(glob.glob(os.path.join(mailed["patches"], "*.patch")))
    with open(partial, "wb") as out:
        for f in (files[0], files[1], files[3]):
            with open(f, "rb") as fh:
                out.write(fh.read())
    assert "2/3 missing" in _one_line_error(run_cli(*common, "--mbox", partial))
    # A series that does not apply on the base given.
    before = repo_state(mailed["repo"])
    line = _one_line_error(run_cli(*common, "--mbox", mailed["mbox"], "--base", "origin/master",
                                   "--paths", "migration"))
    assert repo_state(mailed["repo"]) == before
    assert "patch 1/3" in line and "does not apply on origin/master" in line


def test_non_ascii_names_and_broken_date(mailed: dict[str, str], tmp_path: object) -> None:
    with open(mailed["mbox"], encoding="utf-8") as fh:
        raw = fh.read()
    raw = raw.replace("From: Demo Author", "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?=")
    raw = "\n".join("Date: yesterday-ish" if x.startswith("Date:") else x
                    for x in raw.split("\n"))
    mb = os.path.join(str(tmp_path), "one.mbox")
    with open(mb, "w") as fh:
        fh.write(raw)
    out = os.path.join(str(tmp_path), "d.mbox")
    r = run_cli("reply", "--repo", mailed["repo"], "--mbox", mb, *SCOPE, "--output", out,
                "--cache-dir", os.path.join(str(tmp_path), "c"))
    assert r.returncode == 0, r.stderr
    d = next(iter(mailbox.mbox(out)))
    msg = email.message_from_bytes(d.as_bytes(), policy=email.policy.default)
    assert "Jürgen Müller" in str(msg["To"])
    assert msg.get_content().startswith("On yesterday-ish, Jürgen Müller wrote:")


@pytest.mark.skipif(shutil.which("pre-commit") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "pre-commit")), reason="pre-commit not installed")
def test_pre_commit_hook_with_the_real_framework(tmp_path: object) -> None:
    from .conftest import ROOT

    pc = shutil.which("pre-commit") or os.path.join(os.path.dirname(sys.executable), "pre-commit")
    d = os.path.join(str(tmp_path), "repo")
    shas = build_series_repo(d)
    git(d, "checkout", "-q", "-b", "work", shas[1])
    env = {**os.environ, "PRE_COMMIT_HOME": os.path.join(str(tmp_path), "pc-home"),
           "XDG_CACHE_HOME": os.path.join(str(tmp_path), "cache")}
    # A planted mistake, staged: refused, the finding printed.
    src = os.path.join(ROOT, "fixtures", "series", "threadify", "2-thread", "migration",
                       "migration.c")
    shutil.copy(src, os.path.join(d, "migration", "migration.c"))
    git(d, "add", "migration/migration.c")
    r = subprocess.run([pc, "try-repo", ROOT, "reviewer", "--verbose"], cwd=d, env=env,
                       capture_output=True, text=True, check=False, timeout=1200)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "QM009" in r.stdout and "exit-off-main-thread" in r.stdout
    # A clean change passes.
    git(d, "reset", "-q", "--hard")
    with open(os.path.join(d, "migration", "savevm.c"), "a") as fh:
        fh.write("\n/* a harmless comment */\n")
    git(d, "add", "migration/savevm.c")
    r = subprocess.run([pc, "try-repo", ROOT, "reviewer", "--verbose"], cwd=d, env=env,
                       capture_output=True, text=True, check=False, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_from_refs_and_env(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "repo")
    shas = build_series_repo(d)
    cache = os.path.join(str(tmp_path), "c")
    r = run_cli("check", "--repo", d, "--from-ref", shas[1], "--to-ref", shas[2], *SCOPE,
                "--cache-dir", cache)
    assert r.returncode == 1 and "QM007" in r.stdout
    r = run_cli("check", "--repo", d, *SCOPE, "--cache-dir", cache,
                env={"PRE_COMMIT_FROM_REF": shas[2], "PRE_COMMIT_TO_REF": shas[3]})
    assert r.returncode == 0 and "fixed by this change" in r.stdout
    assert "both --from-ref" in _one_line_error(run_cli("check", "--repo", d, "--from-ref",
                                                        shas[1]))


def test_commit_trailers_map_to_messages() -> None:
    from reviewer.mail.review import message_id_of

    assert message_id_of("x\n\nMessage-ID: <20251022192612.2737648-8-peterx@redhat.com>\n") == (
        "<20251022192612.2737648-8-peterx@redhat.com>")
    assert message_id_of(
        "x\n\nLink: https://lore.kernel.org/r/20251022192612.2737648-8-peterx@redhat.com\n"
    ) == "<20251022192612.2737648-8-peterx@redhat.com>"
    assert message_id_of("no trailer here\n") == ""


def test_check_compares_with_the_head_of_the_moment(tmp_path: object) -> None:
    """The committed side is cached per HEAD: after a commit, the next check
    compares the index with the new HEAD, not with the one before it."""
    from reviewer.check import check
    from reviewer.model import load_model

    from .conftest import ROOT

    d = os.path.join(str(tmp_path), "repo")
    shas = build_series_repo(d)
    git(d, "reset", "-q", "--hard", shas[1])
    cache = os.path.join(str(tmp_path), "c")
    src = os.path.join(ROOT, "fixtures", "series", "threadify", "2-thread", "migration",
                       "migration.c")
    shutil.copy(src, os.path.join(d, "migration", "migration.c"))
    git(d, "add", "migration/migration.c")
    got = check(d, paths=["migration", "hw"], cache_dir=cache, model=load_model())
    planted = {f.fingerprint for f in got.new if f.rule == "QM009"}
    assert planted
    git(d, "commit", "-q", "-m", "thread")
    git(d, "checkout", "-q", shas[1], "--", "migration/migration.c")
    got = check(d, paths=["migration", "hw"], cache_dir=cache, model=load_model())
    assert planted <= {f.fingerprint for f in got.fixed}
    assert not got.new
