"""The command line: version, help, exit codes, bad input, the cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import FIXTURES

COMMANDS = ["facts", "demo"]


def run_cli(*args: str, cwd: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reviewer.cli", *args], capture_output=True, text=True,
        cwd=cwd, env={**os.environ, **(env or {})}, timeout=300, check=False,
    )


def test_version() -> None:
    r = run_cli("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("reviewer ")
    assert "compiled walk helper: " in r.stdout
    r = run_cli("--version", env={"REVIEWER_WALK_HELPER": "0"})
    assert "compiled walk helper: off (REVIEWER_WALK_HELPER=0)" in r.stdout


@pytest.mark.parametrize("cmd", [None, *COMMANDS])
def test_help(cmd: str | None) -> None:
    r = run_cli(*([cmd] if cmd else []), "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert "Traceback" not in r.stderr
    return lines[-1]


@pytest.fixture
def tree(tmp_path: object) -> str:
    d = os.path.join(str(tmp_path), "tree")
    shutil.copytree(os.path.join(FIXTURES, "include"), os.path.join(d, "include"))
    os.makedirs(os.path.join(d, "migration"))
    shutil.copy(os.path.join(FIXTURES, "extract", "bql.c"), os.path.join(d, "migration"))
    return d


def test_missing_path_only(tree: str, isolated_cache: str) -> None:
    r = run_cli("facts", "--root", tree, "nope/")
    line = _one_line_error(r)
    assert "no C translation units" in line
    assert "nope/: no such file" in r.stderr


def test_bad_inputs_do_not_stop_the_run(tree: str, isolated_cache: str) -> None:
    with open(os.path.join(tree, "README.txt"), "w") as fh:
        fh.write("not C")
    with open(os.path.join(tree, "migration", "latin1.c"), "wb") as fh:
        fh.write(b'/* caf\xe9 */\n#include "qemu-stubs.h"\nvoid f(void) { bql_lock(); }\n')
    r = run_cli("facts", "--root", tree, "nope.c", "README.txt", "migration", "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    probs = "\n".join(doc["problems"])
    assert "nope.c: no such file or directory" in probs
    assert "README.txt: not a C source" in probs
    assert "latin1.c: not valid UTF-8" in probs
    files = {tu["file"] for tu in doc["tus"]}
    assert files == {"migration/bql.c", "migration/latin1.c"}
    latin = next(tu for tu in doc["tus"] if tu["file"] == "migration/latin1.c")
    assert [o["op"] for o in latin["bql_ops"]] == ["lock"]


def test_compile_db_problems(tree: str, isolated_cache: str) -> None:
    bd = os.path.join(tree, "build")
    os.makedirs(bd)
    r = run_cli("facts", "--root", tree, "--build-dir", bd, "migration")
    assert "compile_commands.json: not found" in _one_line_error(r)
    with open(os.path.join(bd, "compile_commands.json"), "w") as fh:
        fh.write("{not json")
    r = run_cli("facts", "--root", tree, "--build-dir", bd, "migration")
    assert "unreadable compile database" in _one_line_error(r)
    with open(os.path.join(bd, "compile_commands.json"), "w") as fh:
        json.dump([
            {"directory": bd, "file": "../migration/gone.c", "arguments": ["cc", "-c", "x.c"]},
            {"directory": bd, "file": "../migration/bql.c",
             "arguments": ["gcc", "-I../include", "-Wall", "-c", "../migration/bql.c",
                           "-o", "bql.o", "-MD", "-MF", "bql.d"]},
        ], fh)
    r = run_cli("facts", "--root", tree, "--build-dir", bd, "migration", "migration/gone.c",
                "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["mode"] == "build"
    assert any("gone.c: no such file" in p for p in doc["problems"])
    (tu,) = doc["tus"]
    assert tu["mode"] == "build" and tu["errors"] == 0


def test_missing_resource_dir(tree: str, isolated_cache: str) -> None:
    r = run_cli("facts", "--root", tree, "--resource-dir", "/nonexistent", "migration")
    assert "no stddef.h there" in _one_line_error(r)


def test_cache_second_run_parses_nothing_and_detects_tampering(
    tree: str, isolated_cache: str
) -> None:
    first = json.loads(run_cli("facts", "--root", tree, "migration", "-f", "json").stdout)
    assert (first["parsed"], first["cached"]) == (1, 0)
    second = json.loads(run_cli("facts", "--root", tree, "migration", "-f", "json").stdout)
    assert (second["parsed"], second["cached"]) == (0, 1)
    assert second["tus"] == first["tus"]
    # Tamper with the entry: detected, dropped, rebuilt.
    entries = [os.path.join(d, f) for d, _, fs in os.walk(isolated_cache) for f in fs]
    (entry,) = entries
    with open(entry, "r+b") as fh:
        data = fh.read()
        fh.seek(0)
        fh.write(data.replace(b"bql_unlock", b"bql_unlocK", 1))
    third = json.loads(run_cli("facts", "--root", tree, "migration", "-f", "json").stdout)
    assert third["parsed"] == 1
    assert any("corrupted" in p for p in third["problems"])
    assert third["tus"] == first["tus"]
    # A header change invalidates the entry.
    with open(os.path.join(tree, "include", "qemu-stubs.h"), "a") as fh:
        fh.write("\n/* touched */\n")
    fourth = json.loads(run_cli("facts", "--root", tree, "migration", "-f", "json").stdout)
    assert fourth["parsed"] == 1


def test_text_output(tree: str, isolated_cache: str) -> None:
    r = run_cli("facts", "--root", tree, "migration")
    assert r.returncode == 0, r.stderr
    assert "== migration/bql.c" in r.stdout
    assert "with_bql_held" in r.stdout


def test_demo_runs_and_leaves_nothing(tmp_path: object, isolated_cache: str) -> None:
    r = run_cli("demo", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "migration: thread-ify the incoming load" in r.stdout
    for rule in ("QM002", "QM003", "QM004", "QM005", "QM007", "QM008", "QM009", "QM010"):
        assert rule in r.stdout
    assert "Nothing the series introduced is still open" in r.stdout
    assert os.listdir(str(tmp_path)) == []


def test_tu_libclang_cannot_open(tree: str, isolated_cache: str) -> None:
    os.symlink(os.path.join(tree, "nowhere.c"), os.path.join(tree, "migration", "dangling.c"))
    r = run_cli("facts", "--root", tree, "migration", "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    probs = "\n".join(doc["problems"])
    assert "migration/dangling.c: cannot be read" in probs
    assert "libclang could not parse" in probs
    by_file = {tu["file"]: tu for tu in doc["tus"]}
    assert by_file["migration/dangling.c"]["failed"]
    assert by_file["migration/bql.c"]["errors"] == 0
    text = run_cli("facts", "--root", tree, "migration")
    assert "[NOT READ:" in text.stdout


def test_rules_and_explain() -> None:
    r = run_cli("rules")
    assert r.returncode == 0, r.stderr
    for rid in ("QM001", "QM003", "QM010", "QM100"):
        assert rid in r.stdout
    r = run_cli("explain", "QM003")
    assert r.returncode == 0
    assert "## Why is this bad?" in r.stdout and "bql-imbalance" in r.stdout
    assert run_cli("explain", "bql-imbalance").returncode == 0
    assert "no rule" in _one_line_error(run_cli("explain", "QM999"))


def test_contexts_and_analyze_on_the_demo_series(tmp_path: object, isolated_cache: str) -> None:
    from reviewer.vcs.series import build_series_repo

    repo = os.path.join(str(tmp_path), "repo")
    shas = build_series_repo(repo)
    subprocess.run(["git", "-C", repo, "checkout", "-q", "--detach", shas[2]], check=True)
    r = run_cli("contexts", "qemu_loadvm_state_main", "--root", repo, "migration", "hw")
    assert r.returncode == 0, r.stderr
    assert "thread mig/dst/main, BQL not held (bql_held=false)" in r.stdout
    assert "migration_incoming_thread -> qemu_loadvm_state -> qemu_loadvm_state_main" in r.stdout
    r = run_cli("contexts", "nope_fn", "--root", repo, "migration")
    assert r.returncode == 2 and "no definition" in r.stdout
    r = run_cli("analyze", "--root", repo, "migration", "hw", "-f", "json", "--fail-on", "any")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert {f["rule"] for f in doc["findings"]} == {
        "QM002", "QM003", "QM004", "QM005", "QM007", "QM008", "QM009", "QM010"}
    for f in doc["findings"]:
        assert f["fingerprint"] and f["message"] and f["fix"]
    r = run_cli("analyze", "--root", repo, "migration", "--select", "QM999")
    assert "unknown rule" in _one_line_error(r)


def test_build_dir_header_change_invalidates_cache(tree: str, isolated_cache: str) -> None:
    # Headers found relative to the compile command's directory (QEMU's generated
    # config-host.h, qapi/*.h) are spelled relative by libclang; the cache must
    # still notice when they change.
    bd = os.path.join(tree, "build")
    os.makedirs(bd)
    with open(os.path.join(bd, "gen.h"), "w") as fh:
        fh.write("#define GENERATED 1\n")
    with open(os.path.join(bd, "compile_commands.json"), "w") as fh:
        json.dump([
            {"directory": bd, "file": "../migration/bql.c",
             "arguments": ["gcc", "-I../include", "-include", "gen.h", "-c",
                           "../migration/bql.c", "-o", "bql.o"]},
        ], fh)
    args = ("facts", "--root", tree, "--build-dir", bd, "migration", "-f", "json")
    first = json.loads(run_cli(*args).stdout)
    assert (first["parsed"], first["tus"][0]["errors"]) == (1, 0)
    assert json.loads(run_cli(*args).stdout)["parsed"] == 0
    with open(os.path.join(bd, "gen.h"), "a") as fh:
        fh.write("#define ALSO_GENERATED 1\n")
    assert json.loads(run_cli(*args).stdout)["parsed"] == 1
