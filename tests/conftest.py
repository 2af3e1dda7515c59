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
