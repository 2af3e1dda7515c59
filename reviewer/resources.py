"""Where packaged data lives: templates/ and fixtures/ ship inside the wheel as
reviewer.templates and reviewer.fixtures (see pyproject.toml); in a source
checkout they are read from the top of the repository."""

from __future__ import annotations

import importlib.util
import os

_TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dir(package: str, top: str) -> str:
    # Data-only directories are namespace packages: ask the import system where
    # it found them rather than importlib.resources (a MultiplexedPath there).
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for path in spec.submodule_search_locations:
            if os.path.isdir(path):
                return str(path)
    return os.path.join(_TOP, top)


def templates_dir() -> str:
    return _dir("reviewer.templates", "templates")


def fixtures_dir() -> str:
    return _dir("reviewer.fixtures", "fixtures")
