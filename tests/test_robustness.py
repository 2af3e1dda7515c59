"""Bad and unusual inputs, hostile patch text, resource bounds (docs/robustness.md).

Every command here leaves the user's repository byte-for-byte as it was
(tests.test_scan.repo_state) and its scratch trees gone."""

from __future__ import annotations

import email
import email.policy
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from reviewer.vcs.series import build_series_repo

from .test_cli import _one_line_error, run_cli
from .test_scan import git, repo_state

SCOPE = ["--paths", "migration", "--paths", "hw"]
ESC = "\x1b]0;pwned\x07\x1b[31m"


def _no_scratch(cache: str) -> None:
    for sub in ("scan", "mail"):
        d = os.path.join(cache, sub)
        if os.path.isdir(d):
            assert [x for x in os.listdir(d) if not x.endswith(".lock")] == [], d


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The fixture series under a path with a space and a non-ASCII name, one
    more commit of awkward changes, hooks that must never run, and a warm cache."""
    top = str(tmp_path_factory.mktemp("robust") / "my répo")
    d = os.path.join(top, "repo")
    shas = build_series_repo(d)
    marker = os.path.join(top, "EXECUTED")
    # The tree's own scripts, and a compile database whose commands would leave a mark.
    with open(os.path.join(d, "configure"), "w") as fh:
        fh.write(f"#!/bin/sh\necho configure >> '{marker}'\n")
    os.chmod(os.path.join(d, "configure"), 0o755)
    os.makedirs(os.path.join(d, "hw", "x"))
    with open(os.path.join(d, "hw", "x", "y.c"), "w") as fh:
        fh.write("int y;\n")
    git(d, "add", "-A")
    git(d, "commit", "-q", "-m", "hw: a directory")
    # The awkward commit: mode change, symlinks, a submodule, a directory
    # replaced by a file, names with spaces, non-ASCII and non-UTF-8 bytes,
    # a non-UTF-8 source, and a hostile subject and file name.
    os.chmod(os.path.join(d, "migration", "savevm.c"), 0o755)
    os.symlink("savevm.c", os.path.join(d, "migration", "link.c"))
    os.symlink("/etc", os.path.join(d, "hw", "etc"))
    git(d, "rm", "-q", "-r", "hw/x")
    with open(os.path.join(d, "hw", "x"), "w") as fh:
        fh.write("now a file\n")
    for name in ("my dev.c", "café.c", f"evil{ESC}<b>.c"):
        with open(os.path.join(d, "hw", name), "w") as fh:
            fh.write("void f(void);\nvoid g(void) { f(); }\n")
    with open(os.path.join(d.encode(), b"hw", b"latin\xe9.c"), "wb") as fh:
        fh.write(b"/* caf\xe9 */\nvoid h(void) { }\n")
    git(d, "add", "-A")
    git(d, "update-index", "--add", "--cacheinfo", f"160000,{shas[0]},hw/sub")
    subject = f"hw: {ESC}<script>alert(1)</script> {{{{ 7*7 }}}} {{% raw %}}"
    git(d, "-c", "user.name=Eve <img src=x>", "commit", "-q", "-m", subject)
    git(d, "checkout", "-q", "--detach", "HEAD")
    # Hooks, installed last: nothing reviewer does may run them.
    for hook in ("pre-commit", "post-commit", "post-checkout", "post-merge", "applypatch-msg",
                 "pre-applypatch", "post-applypatch", "post-rewrite", "reference-transaction",
                 "pre-auto-gc", "fsmonitor-watchman", "pre-push"):
        path = os.path.join(d, ".git", "hooks", hook)
        with open(path, "w") as fh:
            fh.write(f"#!/bin/sh\necho {hook} >> '{marker}'\n")
        os.chmod(path, 0o755)
    cache = os.path.join(top, "cache")
    return {"repo": d, "base": shas[0], "cache": cache, "marker": marker, "top": top,
            "tip": git(d, "rev-parse", "HEAD")}


def _files(path: str) -> dict[str, str]:
    """repo_state for a bare repository (no stash there)."""
    import hashlib

    out = {}
    for d, dirs, files in os.walk(path):
        dirs[:] = [x for x in dirs if x != "objects"]
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.join(d, f)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def scan_cli(w: dict[str, str], *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return run_cli("scan", "--repo", w["repo"], "--cache-dir", w["cache"], *SCOPE, *args,
                   env=env)


def test_awkward_range_detached_head_and_hostile_text(work: dict[str, str]) -> None:
    before = repo_state(work["repo"])
    r = scan_cli(work, f"{work['base']}..HEAD", "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    files = set(doc["patches"][-1]["files"])
    assert {"hw/my dev.c", "hw/café.c", "hw/x", "hw/sub", "migration/link.c"} <= files
    assert "\x1b" not in r.stderr
    # Detached HEAD, no range: HEAD~1..HEAD.
    r = scan_cli(work, "-f", "text")
    assert r.returncode == 0, r.stderr
    for fmt in ("text", "markdown", "html"):
        out = scan_cli(work, f"{work['base']}..HEAD", "-f", fmt).stdout
        assert "\x1b" not in out and "\x07" not in out
        assert "{{ 7*7 }}" in out and "{% raw %}" in out and " 49 " not in out
        if fmt != "text":  # plain text is not markup: "<b>" is just text there
            assert "<script>" not in out and "<b>" not in out and "<img" not in out
    assert repo_state(work["repo"]) == before
    assert not os.path.exists(work["marker"])
    _no_scratch(work["cache"])


def test_nothing_from_the_tree_runs(work: dict[str, str], tmp_path: object) -> None:
    d = work["repo"]
    bd = os.path.join(str(tmp_path), "build")
    os.makedirs(bd)
    with open(os.path.join(bd, "compile_commands.json"), "w") as fh:
        json.dump([{"directory": d, "file": "migration/savevm.c",
                    "command": f"sh -c 'echo cc >> {work['marker']}' -Iinclude -c x.c"}], fh)
    before = repo_state(d)
    r = run_cli("facts", "--root", d, "--build-dir", bd, "migration/savevm.c",
                "--cache-dir", work["cache"], "-f", "json")
    assert r.returncode == 0, r.stderr
    git(d, "add", "-A")  # stage something C-shaped for the pre-commit hook
    staged = repo_state(d)
    r = run_cli("check", "--repo", d, *SCOPE, "--cache-dir", work["cache"])
    assert r.returncode in (0, 1), r.stderr
    assert repo_state(d) == staged
    git(d, "-c", "core.hooksPath=/dev/null", "reset", "-q")
    assert before
    assert not os.path.exists(work["marker"])


def test_repository_shapes(work: dict[str, str], tmp_path: object) -> None:
    t = str(tmp_path)
    bare = os.path.join(t, "bare.git")
    subprocess.run(["git", "clone", "-q", "--bare", work["repo"], bare], check=True)
    before = _files(bare)
    r = run_cli("scan", f"{work['base']}..{work['tip']}", "--repo", bare, "--cache-dir",
                work["cache"], *SCOPE, "-f", "json")
    assert r.returncode == 0, r.stderr
    assert _files(bare) == before
    shallow = os.path.join(t, "shallow")
    subprocess.run(["git", "clone", "-q", "--depth", "1", "file://" + work["repo"], shallow],
                   check=True, capture_output=True)
    before = repo_state(shallow)
    assert "shallow" in _one_line_error(run_cli("scan", "HEAD~1..HEAD", "--repo", shallow))
    assert repo_state(shallow) == before
    assert "empty" in _one_line_error(scan_cli(work, "HEAD..HEAD"))
    line = _one_line_error(scan_cli(work, f"{work['base']}..HEAD",
                                    env={"REVIEWER_MAX_COMMITS": "2"}))
    assert "more than 2" in line
    assert "unknown revision" in _one_line_error(scan_cli(work, "--", "--output=/tmp/x"))
    assert "unknown revision" in _one_line_error(scan_cli(work, "HEAD..$(touch x)"))


def test_sparse_checkout_does_not_thin_the_scratch_tree(tmp_path: object) -> None:
    """A user's sparse checkout (cone mode, sparse index) hides directories
    from their work tree, not from the trees a scan materialises."""
    from reviewer.vcs.git import Repository

    repo = os.path.join(str(tmp_path), "repo")
    os.makedirs(os.path.join(repo, "a"))
    os.makedirs(os.path.join(repo, "b"))
    subprocess.run(["git", "init", "-q", repo], check=True)
    for rel in ("a/x.h", "b/y.h"):
        with open(os.path.join(repo, rel), "w") as fh:
            fh.write(rel + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    git(repo, "sparse-checkout", "set", "--cone", "a")
    git(repo, "config", "index.sparse", "true")
    git(repo, "sparse-checkout", "reapply")
    assert not os.path.exists(os.path.join(repo, "b"))
    before = repo_state(repo)
    dest = os.path.join(str(tmp_path), "scratch", "tree")
    os.makedirs(dest)
    Repository(repo).archive_to("HEAD", dest, workers=2)
    got = sorted(os.path.relpath(os.path.join(d, f), dest)
                 for d, _, fs in os.walk(dest) for f in fs)
    assert got == ["a/x.h", "b/y.h"]
    assert os.listdir(os.path.dirname(dest)) == ["tree"]  # no index file left behind
    assert repo_state(repo) == before


def test_cache_and_output_failures(work: dict[str, str], tmp_path: object) -> None:
    t = str(tmp_path)
    rng = f"{work['base']}..HEAD"
    before = repo_state(work["repo"])
    afile = os.path.join(t, "file")
    open(afile, "w").close()
    assert "Not a directory" in _one_line_error(
        run_cli("scan", rng, "--repo", work["repo"], "--cache-dir", os.path.join(afile, "c")))
    # Disk full: the report to /dev/full, as --output and as stdout.
    assert "No space left" in _one_line_error(scan_cli(work, rng, "-o", "/dev/full"))
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "reviewer.cli", "scan", rng, "--repo",
                            work["repo"], "--cache-dir", work["cache"], *SCOPE, "-f", "json"],
                           stdout=full, stderr=subprocess.PIPE, text=True, check=False)
    assert r.returncode == 2 and "No space left" in r.stderr and "Traceback" not in r.stderr
    # A closed pipe (reviewer scan | head -1) is not an error.
    p = subprocess.Popen([sys.executable, "-m", "reviewer.cli", "scan", rng, "--repo",
                          work["repo"], "--cache-dir", work["cache"], *SCOPE, "-f", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.readline()
    p.stdout.close()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0 and b"Traceback" not in err and b"error" not in err, err
    # A broken pipe of reviewer's own (a worker that died) with stdout still
    # open is an error, not `| head`: never exit 0 without a report.
    code = ("import sys, reviewer.scan as s\n"
            "def broken(*a, **k): raise BrokenPipeError(32, 'Broken pipe')\n"
            "s.scan = broken\n"
            "sys.argv = ['reviewer', *sys.argv[1:]]\n"
            "from reviewer.cli import main; main()\n")
    r = subprocess.run([sys.executable, "-c", code, "scan", rng, "--repo", work["repo"],
                        "--cache-dir", work["cache"], *SCOPE], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 2 and "internal error: BrokenPipeError" in r.stderr, r.stderr
    # Started with stdout closed (`>&-`): as with > /dev/null; -o still works.
    out = os.path.join(str(tmp_path), "closed-stdout.json")
    r = subprocess.run([sys.executable, "-m", "reviewer.cli", "scan", rng, "--repo",
                        work["repo"], "--cache-dir", work["cache"], *SCOPE, "-f", "json",
                        "-o", out], stderr=subprocess.PIPE, text=True, check=False,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    with open(out) as fh:
        assert json.load(fh)["patches"]
    # A tampered analysed-version entry is detected and rebuilt, not trusted.
    good = json.loads(scan_cli(work, rng, "-f", "json").stdout)
    vdir = os.path.join(work["cache"], "versions-v2")
    for name in os.listdir(vdir):
        with open(os.path.join(vdir, name), "r+b") as fh:
            data = fh.read()
            fh.seek(0)
            fh.write(data.replace(b"QM0", b"QX0"))
            fh.truncate(len(data) - 7)
    again = json.loads(scan_cli(work, rng, "-f", "json").stdout)
    assert again["totals"] == good["totals"] and again["patches"] == [
        {**p, "parsed_tus": p2["parsed_tus"]} for p, p2 in zip(good["patches"],
                                                               again["patches"], strict=True)]
    assert repo_state(work["repo"]) == before
    _no_scratch(work["cache"])


def test_disk_full_while_writing_the_cache(tmp_path: object,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from reviewer.extract import cache as cache_module
    from reviewer.extract.runner import run

    from .conftest import FIXTURES

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    import types

    monkeypatch.setattr(cache_module, "tempfile", types.SimpleNamespace(mkstemp=full))
    res = run([os.path.join(FIXTURES, "extract", "bql.c")], root=FIXTURES,
              cache_dir=str(tmp_path), jobs=1, progress=False)
    assert res.facts.tus[0].functions and not res.facts.tus[0].failed
    assert any("cache not written (No space left" in p for p in res.problems)


def test_compile_db_empty_and_not_a_list(work: dict[str, str], tmp_path: object) -> None:
    bd = str(tmp_path)
    for text, what in (("[]", "no entries"), ("{}", "not a JSON list"),
                       ("", "unreadable"), ("\xff\xfe", "unreadable")):
        with open(os.path.join(bd, "compile_commands.json"), "w", encoding="latin-1") as fh:
            fh.write(text)
        r = run_cli("facts", "--root", work["repo"], "--build-dir", bd, "migration",
                    "--cache-dir", work["cache"])
        assert what in _one_line_error(r)


@pytest.mark.parametrize("zygote", ["0", "1"])
def test_pathological_c_is_bounded(tmp_path: object, zygote: str) -> None:
    """Both ways of forking the per-TU children (from here, or from the zygote
    that whole-tree runs use) bound the same things the same way."""
    root = str(tmp_path)
    m = os.path.join(root, "migration")
    os.makedirs(m)
    files = {
        "crash.c": "int f(int a){ return " + "+".join(["a"] * 20000) + "; }\n",
        "deep.c": "void g(void); void f(int a){ " + "if (a) " * 3000 + "g(); }\n",
        "nested.c": "void g(void); void f(int a){ " + "if (a) " * 300 + "g(); }\n",
        "fine.c": "void g(void);\nvoid f(void) { g(); }\n",
    }
    for name, text in files.items():
        with open(os.path.join(m, name), "w") as fh:
            fh.write(text)
    with open(os.path.join(m, "garbage.c"), "wb") as fh:
        fh.write(bytes(random.Random(1).randrange(256) for _ in range(20000)))
    t0 = time.monotonic()
    r = run_cli("facts", "--root", root, "migration", "--no-cache", "-j", "2", "-f", "json",
                env={"REVIEWER_ZYGOTE": zygote})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    probs = "\n".join(doc["problems"])
    assert "crash.c: libclang crashed on this file (SIGSEGV); skipped" in probs
    assert "deep.c: nested too deeply" in probs
    assert "nested.c: statements nested more than 200 deep" in probs
    by = {tu["file"]: tu for tu in doc["tus"]}
    assert by["migration/fine.c"]["functions"] and not by["migration/fine.c"]["failed"]
    assert by["migration/garbage.c"]["errors"] > 0
    # Thousands of functions under a 1 s limit: skipped with a notice, in time.
    with open(os.path.join(m, "many.c"), "w") as fh:
        fh.write("".join(f"void g{i}(void);\nvoid f{i}(void) {{ g{i}(); }}\n"
                         for i in range(20000)))
    r = run_cli("facts", "--root", root, "migration/many.c", "migration/fine.c", "--no-cache",
                env={"REVIEWER_TU_TIMEOUT": "1", "REVIEWER_ZYGOTE": zygote})
    assert "many.c: took longer than 1 s" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 60


def test_duplicate_and_foreign_messages_in_an_mbox(tmp_path: object) -> None:
    from reviewer.mail.series import read_mbox

    def patch(n: int, mid: str) -> str:
        return (f"From nobody Mon Sep 17 00:00:00 2001\nFrom: A <a@x>\nSubject: [PATCH {n}/2] "
                f"p{n}\nMessage-ID: <{mid}>\n\nmsg\n---\ndiff --git a/f.c b/f.c\n"
                "--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-a\n+b\n\n")

    box = os.path.join(str(tmp_path), "dup.mbox")
    with open(box, "w") as fh:
        fh.write(patch(1, "1@x") + patch(1, "1@x") + patch(2, "2@x") + patch(2, "2bis@x"))
        fh.write("From nobody Mon Sep 17 00:00:00 2001\nSubject: Re: [PATCH 1/2] p1\n\nLGTM\n\n")
    s = read_mbox(box)
    assert [p.message_id for p in s.patches] == ["<1@x>", "<2@x>"]
    assert any("another copy of patch 2" in x for x in s.skipped)
    assert any(x.startswith("Re:") for x in s.skipped)


def test_mail_headers_from_hostile_patches() -> None:
    from reviewer.findings import Finding
    from reviewer.mail.reply import draft
    from reviewer.mail.series import parse_message

    raw = ("From: =?UTF-8?Q?Eve=0ABcc:_victim@example.org?= <eve@example.org>\n"
           "To: list@example.org\nSubject: [PATCH 1/1] x\n =?UTF-8?Q?=0D=0ABcc:_v2@example.org?="
           f" {ESC}{{{{ 7*7 }}}}\nMessage-ID: <1@x>\n\nbody\n---\n"
           "diff --git a/f.c b/f.c\n--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-a\n+b {{ 7*7 }}\n")
    mp = parse_message(raw.encode())
    assert mp is not None
    f = Finding("QM001", "x", "error", "f", "f.c", 1, f"msg {ESC}{{{{ 6*7 }}}}")
    msg = draft(mp, [f], sender="Rita <rita@example.org>", date="Mon, 1 Jan 2024 00:00:00 +0000")
    data = msg.as_bytes()
    back = email.message_from_bytes(data, policy=email.policy.default)
    assert back["Bcc"] is None and b"\nBcc:" not in data
    assert "Re: [PATCH 1/1] x" in str(back["Subject"]) and "{{ 7*7 }}" in str(back["Subject"])
    body = back.get_content()
    assert "\x1b" not in body and "{{ 6*7 }}" in body and "42" not in body
    assert "{{ 7*7 }}" in body and "49" not in body


def test_interrupted_at_random_points(work: dict[str, str], tmp_path: object) -> None:
    """SIGINT to the whole process group (a Ctrl-C) and SIGKILL at random
    moments of a cold scan: the repository never changes; after Ctrl-C no
    scratch is left, after SIGKILL the next run clears it."""
    before = repo_state(work["repo"])
    rnd = random.Random(int(os.environ.get("REVIEWER_KILL_SEED", "20251122")))
    cache = os.path.join(str(tmp_path), "cache")
    for i in range(4):
        sig = signal.SIGINT if i % 2 == 0 else signal.SIGKILL
        proc = subprocess.Popen(
            [sys.executable, "-m", "reviewer.cli", "scan", f"{work['base']}..HEAD", "--repo",
             work["repo"], *SCOPE, "--cache-dir", cache, "--no-cache", "-j", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(rnd.uniform(0.2, 3.0))
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
        assert b"Traceback" not in err, err
        assert repo_state(work["repo"]) == before
        if sig == signal.SIGINT:
            _no_scratch(cache)
            # 130: reviewer's handler; -SIGINT: Ctrl-C before Python set its handler up.
            assert proc.returncode in (0, 130, -signal.SIGINT), (proc.returncode, err)
    r = run_cli("scan", f"{work['base']}..HEAD", "--repo", work["repo"], *SCOPE,
                "--cache-dir", cache, "-f", "json")
    assert r.returncode == 0, r.stderr
    _no_scratch(cache)
    assert repo_state(work["repo"]) == before


def test_mbox_scan_interrupted_leaves_no_clone(work: dict[str, str], tmp_path: object) -> None:
    t = str(tmp_path)
    mbox = os.path.join(t, "s.mbox")
    pdir = os.path.join(t, "pp")
    git(work["repo"], "format-patch", "-q", "-o", pdir, "HEAD~3..HEAD~1")
    with open(mbox, "wb") as fh:
        for f in sorted(os.listdir(pdir)):
            with open(os.path.join(pdir, f), "rb") as p:
                fh.write(p.read())
    before = repo_state(work["repo"])
    cache = os.path.join(t, "cache")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reviewer.cli", "scan", "--repo", work["repo"], "--mbox", mbox,
         "--base", "HEAD~3", *SCOPE, "--cache-dir", cache, "--no-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(1.5)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err, err
    assert repo_state(work["repo"]) == before
    _no_scratch(cache)


def test_zygote_and_forked_children_give_the_same_facts() -> None:
    """The zygote only changes which process forks the children."""
    from .conftest import FIXTURES

    docs = []
    for zygote in ("0", "1"):
        r = run_cli("facts", "--root", FIXTURES, "extract", "rules", "--no-cache", "-j", "2",
                    "-f", "json", "--with-body", env={"REVIEWER_ZYGOTE": zygote})
        assert r.returncode == 0, r.stderr
        docs.append(json.loads(r.stdout))
    assert docs[0] == docs[1] and docs[0]["parsed"] > 10
