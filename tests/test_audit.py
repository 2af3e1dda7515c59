"""reviewer audit on a fixture tree of "devices" whose load hooks do and do not
need the BQL: verdicts and arrivals match the inline expectations
(`/* audit: VERDICT, ARRIVAL */` on each hook's definition), in every format;
--rev and --diff read revisions from git."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import jsonschema

from .conftest import FIXTURES, sarif_schema
from .test_cli import _one_line_error, run_cli
from .test_scan import git, repo_state

_EXPECT = re.compile(
    r"audit:\s*(needs|not-needed|unknown),\s*(held|not held|depends|maybe)\s*\*/")


def expectations() -> dict[str, tuple[str, str]]:
    out = {}
    for d, _, files in os.walk(os.path.join(FIXTURES, "audit")):
        for f in files:
            with open(os.path.join(d, f), encoding="utf-8") as fh:
                for line in fh:
                    m = _EXPECT.search(line)
                    if m:
                        name = re.search(r"(\w+)\s*\(", line)
                        assert name
                        out[name.group(1)] = (m.group(1).replace("-", " "), m.group(2))
    return out


def test_verdicts_match_the_fixtures(isolated_cache: str) -> None:
    r = run_cli("audit", "audit", "--root", FIXTURES, "--entry", "qemu_loadvm_state_main",
                "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    short = {"depends on bql_held": "depends", "maybe held": "maybe"}
    got = {h["function"]: (h["verdict"], short.get(h["arrival"], h["arrival"]))
           for h in doc["hooks"]}
    assert got == expectations()
    by = {h["function"]: h for h in doc["hooks"]}
    problems = {h["function"] for h in doc["hooks"] if h["problem"]}
    assert problems == {"dirty_bitmap_post_load", "dirty_load_state"}
    assert by["vga_pre_load"]["evidence"][-1].startswith(
        "vga_update_memory() calls memory_region_transaction_begin()")
    assert by["vga_pre_load"]["chain"] == [
        "qemu_loadvm_state_main", "qemu_loadvm_section_start_full", "vmstate_load",
        "vmstate_load_state", "vga_pre_load"]
    # The witness of a hook that may arrive without the BQL is a path without it:
    # PART sections reach the iterable handler, which loads its own description.
    assert by["dirty_bitmap_post_load"]["chain"] == [
        "qemu_loadvm_state_main", "qemu_loadvm_section_part_end", "vmstate_load",
        "dirty_load_state", "vmstate_load_state", "dirty_bitmap_post_load"]
    # The field list named apart: its in-place type and nested description.
    assert by["dirty_get_bits"]["chain"][-2:] == ["vmstate_load_state", "dirty_get_bits"]
    assert "vmstate_subsection_load" not in by["dirty_get_bits"]["chain"]
    assert by["dirty_part_post_load"]["chain"][-3:] == [
        "vmstate_load_state", "vmstate_load_state", "dirty_part_post_load"]
    assert by["dirty_meta_pre_load"]["chain"][-3:] == [
        "vmstate_subsection_load", "vmstate_load_state", "dirty_meta_pre_load"]
    # A handler that loads a description by name needs what its hooks need.
    assert by["dirty_load_state"]["evidence"][0].startswith(
        "dirty_load_state() loads vmstate_dirty_bitmap with vmstate_load_state()")
    assert "RamOps.load_page" in by["ram_load"]["why"]
    assert doc["counts"] == {"needs": 5, "not needed": 9, "unknown": 1, "problems": 2}


def test_thread_entry_and_formats(isolated_cache: str, tmp_path: object) -> None:
    common = ["audit", "audit", "--root", FIXTURES]
    r = run_cli(*common, "-f", "json")  # default: thread mig/dst/main
    doc = json.loads(r.stdout)
    assert doc["entry"] == "thread mig/dst/main"
    arr = {h["function"]: h["arrival"] for h in doc["hooks"]}
    assert arr["vga_pre_load"] == "held" and arr["vga_post_load"] == "held"
    # Read by the thread before any section, without taking the BQL.
    assert arr["configuration_post_load"] == "not held"
    assert arr["dirty_bitmap_post_load"] == "maybe held"
    r = run_cli(*common, "--fail-on-problem")
    assert r.returncode == 1 and "!! dirty_bitmap_post_load()" in r.stdout
    html = os.path.join(str(tmp_path), "a.html")
    assert run_cli(*common, "-f", "html", "-o", html).returncode == 0
    with open(html) as fh:
        text = fh.read()
    assert 'class="problem"' in text and "<script" not in text
    r = run_cli(*common, "-f", "markdown")
    assert "| `dirty_bitmap_post_load()` |" in r.stdout
    r = run_cli(*common, "-f", "sarif")
    sarif = json.loads(r.stdout)
    jsonschema.validate(sarif, sarif_schema())
    assert len(sarif["runs"][0]["results"]) == 2
    assert "no thread named" in _one_line_error(run_cli(*common, "--thread", "nope"))
    assert "not both" in _one_line_error(run_cli(*common, "--thread", "a", "--entry", "b"))


def test_rev_and_diff(tmp_path: object, isolated_cache: str) -> None:
    d = os.path.join(str(tmp_path), "repo")
    shutil.copytree(os.path.join(FIXTURES, "audit"), d)
    shutil.copytree(os.path.join(FIXTURES, "include"), os.path.join(d, "include"))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "init", "-q", d], check=True)
    git(d, "add", "-A")
    subprocess.run(["git", "-C", d, "commit", "-q", "-m", "base"], check=True,
                   env={**os.environ, **env})
    # The next commit stops holding the BQL around post_load.
    path = os.path.join(d, "migration", "load.c")
    with open(path) as fh:
        text = fh.read()
    text = text.replace("WITH_BQL_HELD(bql_held) {", "{")
    with open(path, "w") as fh:
        fh.write(text)
    git(d, "commit", "-q", "-am", "load: drop the BQL around post_load")
    before = repo_state(d)
    r = run_cli("audit", "--root", d, "--diff", "HEAD~1", "HEAD")  # every entry point
    assert r.returncode == 0, r.stderr
    assert "!! vga_post_load()" in r.stdout and "held -> maybe held" in r.stdout
    assert "now without the BQL in: thread mig/dst/main" in r.stdout
    r = run_cli("audit", "--root", d, "--diff", "HEAD~1", "HEAD", "--thread", "mig/dst/main")
    assert "!! vga_post_load()" in r.stdout and "held -> not held" in r.stdout
    r = run_cli("audit", "--root", d, "--diff", "HEAD~1", "HEAD", "--thread", "mig/nope")
    assert r.returncode == 0 and "0 hooks changed" in r.stdout
    r = run_cli("audit", "--root", d, "--rev", "HEAD~1", "-f", "json")
    doc = json.loads(r.stdout)
    assert {h["function"]: h["arrival"] for h in doc["hooks"]}["vga_post_load"] == "held"
    assert repo_state(d) == before


def test_model_assumption_prunes_one_edge(isolated_cache: str, tmp_path: object) -> None:
    """Without the built-in [[assume]] (PART sections never carry a
    VMStateDescription), description hooks also arrive through PART sections;
    an extra model can state more, and a malformed one is a one-line error."""
    from reviewer.model import load_model

    model = load_model()
    (a,) = model.assumptions[("qemu_loadvm_section_part_end", "vmstate_load")]
    assert (a.condition, a.value) == ("se->vmsd", False) and "FULL" in a.why
    extra = os.path.join(str(tmp_path), "m.toml")
    with open(extra, "w") as fh:
        fh.write('[[assume]]\ncaller = "x"\n')
    r = run_cli("audit", "audit", "--root", FIXTURES, "--model", extra)
    assert "missing a key" in _one_line_error(r)
    # The same assumption stated the other way round: PART sections carry
    # only descriptions. Then the iterable handlers are never reached by PART.
    with open(extra, "w") as fh:
        fh.write('[[assume]]\ncaller = "qemu_loadvm_section_part_end"\ncallee = "vmstate_load"\n'
                 'condition = "se->vmsd"\nvalue = true\n')
    r = run_cli("audit", "audit", "--root", FIXTURES, "--model", extra, "-f", "json")
    arr = {h["function"]: h["arrival"] for h in json.loads(r.stdout)["hooks"]}
    assert arr["plain_load"] == "held" and arr["vga_post_load"] == "maybe held"
