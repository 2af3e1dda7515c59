"""The compiled walk helper (reviewer/extract/_walk.c) changes the speed of the
walk, never its facts: every fixture tree gives the same facts with and
without it, with headers in scope and without."""

from __future__ import annotations

import os
import shutil
import sysconfig

import pytest

from reviewer.extract import clangwalk
from reviewer.extract.runner import run
from reviewer.model import load_model
from reviewer.report.facts import facts_document

from .conftest import FIXTURES

# (tree, paths): directories put their headers in scope (the decide callback);
# single files do not.
CASES = [
    (FIXTURES, [f"extract/{f}" for f in sorted(os.listdir(os.path.join(FIXTURES, "extract")))]),
    (os.path.join(FIXTURES, "audit"), ["migration", "hw"]),
    (os.path.join(FIXTURES, "nobuild"), ["migration", "hw"]),
    (os.path.join(FIXTURES, "series", "threadify", "0-base"), ["migration"]),
    *[(os.path.join(FIXTURES, "rules", r), ["."]) for r in
      sorted(os.listdir(os.path.join(FIXTURES, "rules")))],
]


def _facts(tree: str, paths: list[str], cache: str) -> object:
    result = run(paths, root=tree, cache_dir=cache, use_cache=False, jobs=1, progress=False)
    return facts_document(result, load_model(), with_body=True)


def test_helper_is_built_where_there_is_a_compiler() -> None:
    """An install on a machine with a C compiler and Python's headers builds
    the helper (setup.py); CI's machines have both, so its path is tested."""
    headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    if not (shutil.which("cc") or shutil.which("gcc")) or not headers:
        pytest.skip("no C compiler or no Python headers: the walk is pure Python here")
    if os.environ.get("REVIEWER_WALK_HELPER") == "0":
        pytest.skip("REVIEWER_WALK_HELPER=0")
    assert clangwalk._HELPER is not None, (
        "the helper was not built: reinstall (pip install -e .) and read the compiler's error")


@pytest.mark.parametrize("tree,paths", CASES, ids=lambda v: os.path.relpath(v, FIXTURES)
                         if isinstance(v, str) else None)
def test_same_facts_with_and_without_helper(
    tree: str, paths: list[str], tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    if clangwalk._HELPER is None:
        pytest.skip("the helper is not built here")
    with_helper = _facts(tree, paths, str(tmp_path))
    monkeypatch.setattr(clangwalk, "_HELPER", None)
    without = _facts(tree, paths, str(tmp_path))
    assert with_helper == without


def _deep_tree(root: str) -> None:
    """Expressions and statements nested around the walker's limit
    (clangwalk.MAX_NESTING), in the shapes the helper looks through."""
    os.makedirs(os.path.join(root, "migration"))
    files = {}
    for n in (990, 996, 997, 998, 1000, 1100):
        files[f"chain{n}.c"] = ("int g(int);\nint f(int a) { return "
                                + "+".join(["a"] * n) + " + g(a); }\n")
    for n in (5, 6, 7, 8):
        e = "a"
        for _ in range(n):
            e = "g(" + e + "+" + "+".join(["a"] * 150) + ")"
        files[f"calls{n}.c"] = "int g(int);\nint f(int a) { return " + e + "; }\n"
    for n in (300, 990, 1000, 1010):
        files[f"ifs{n}.c"] = ("void g(void);\nvoid f(int a) { " + "if (a) " * n
                              + "g(); }\n")
    for name, text in files.items():
        with open(os.path.join(root, "migration", name), "w") as fh:
            fh.write(text)


def test_same_answer_on_deep_nesting_with_and_without_helper(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper skips Python frames, so nesting is counted explicitly, the
    same way on both paths: a file either gives the same facts or is skipped
    as too deep, with and without the helper."""
    if clangwalk._HELPER is None:
        pytest.skip("the helper is not built here")
    root = os.path.join(str(tmp_path), "tree")
    _deep_tree(root)
    with_helper = _facts(root, ["migration"], os.path.join(str(tmp_path), "c"))
    monkeypatch.setattr(clangwalk, "_HELPER", None)
    without = _facts(root, ["migration"], os.path.join(str(tmp_path), "c"))
    assert with_helper == without
    # Both sides of the limit are in the tree.
    failed = {tu["file"] for tu in without["tus"] if tu["failed"]}  # type: ignore[index]
    assert "migration/chain1100.c" in failed and "migration/chain990.c" not in failed


def test_helper_gives_up_on_deep_nesting(tmp_path: object) -> None:
    """Past the helper's depth the Python walker takes the expression, so what
    a very deep file gives is the pure-Python walker's answer."""
    if clangwalk._HELPER is None:
        pytest.skip("the helper is not built here")
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "migration"))
    with open(os.path.join(root, "migration", "deep.c"), "w") as fh:
        fh.write("int g(int);\nint f(int a) { return " + "(" * 240 + "g(a)" + ")" * 240
                 + " + " + "+".join(["a"] * 300) + "; }\n")
    result = run(["migration/deep.c"], root=root, cache_dir=os.path.join(root, "cache"),
                 use_cache=False, jobs=1, progress=False)
    (tu,) = result.facts.tus
    assert [c.callee for c in tu.calls] == ["g"]
