"""Command line. Thin: options in, one call, errors to exit codes.

Exit codes: 0 ok; 1 findings, when the user asked to fail on them; 2 usage or
input error (one line on stderr, no traceback unless --debug).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from reviewer import __version__
from reviewer.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Review QEMU migration threading patches: contexts, the BQL, coroutines.",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

_state: dict[str, bool] = {"debug": False}

T = TypeVar("T")


class FactsFormat(StrEnum):
    text = "text"
    json = "json"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reviewer {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    _state["debug"] = debug


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body: UserError and crashes become one line and exit 2."""
    try:
        return fn()
    except UserError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"reviewer: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("reviewer: interrupted", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, SystemExit):
        raise
    except Exception as exc:
        if _state["debug"]:
            raise
        typer.echo(
            f"reviewer: internal error: {type(exc).__name__}: {exc} (rerun with --debug "
            "and report it)",
            err=True,
        )
        raise typer.Exit(2) from None


def find_root(paths: list[str]) -> str:
    start = os.path.abspath(paths[0]) if paths else os.getcwd()
    d = start if os.path.isdir(start) else os.path.dirname(start)
    cur = d
    while True:
        if os.path.exists(os.path.join(cur, ".git")):
            return cur
        parent = os.path.dirname(cur)
        if parent == cur:
            return os.getcwd()
        cur = parent


RootOpt = Annotated[
    str | None, typer.Option("--root", help="Top of the QEMU tree (default: the git top level).")
]
BuildDirOpt = Annotated[
    str | None,
    typer.Option(
        "--build-dir",
        help="QEMU build directory with compile_commands.json (default: <root>/build if "
        "present; otherwise no-build mode).",
    ),
]
ResourceOpt = Annotated[
    str | None,
    typer.Option("--resource-dir", help="Clang resource directory (builtin headers)."),
]
CacheOpt = Annotated[
    str | None, typer.Option("--cache-dir", help="Fact cache (default ~/.cache/qemu-reviewer).")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
JobsOpt = Annotated[
    int | None, typer.Option("--jobs", "-j", min=1, help="Parallel parses (default: all cores).")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Extra API model TOML merged into the built-in one.")
]


def _model(path: str | None, root: str) -> Any:
    from reviewer.model import load_model

    if path is None:
        local = os.path.join(root, ".reviewer-model.toml")
        path = local if os.path.isfile(local) else None
    return load_model(path)


@app.command()
def facts(
    paths: Annotated[list[str] | None, typer.Argument(help="Files or directories.")] = None,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
    resource_dir: ResourceOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    jobs: JobsOpt = None,
    model: ModelOpt = None,
    fmt: Annotated[FactsFormat, typer.Option("--format", "-f", help="Output format.")] = (
        FactsFormat.text
    ),
    with_body: Annotated[
        bool, typer.Option("--with-body", help="JSON: include each function's body IR.")
    ] = False,
    full: Annotated[bool, typer.Option("--all-calls", help="Text: list every call.")] = False,
) -> None:
    """Print the facts extracted from C files or directories."""

    def body() -> None:
        from reviewer.extract.runner import run
        from reviewer.report.facts import facts_document

        given = paths or []
        top = os.path.abspath(root) if root else find_root(given)
        if not given:
            if os.path.isdir(os.path.join(top, "migration")):
                given.append(os.path.join(top, "migration"))
            else:
                raise UserError("no paths given and no migration/ here; name files or directories")
        api = _model(model, top)
        result = run(
            given, root=top, build_dir=build_dir, resource_dir=resource_dir,
            cache_dir=cache_dir, use_cache=not no_cache, jobs=jobs,
        )
        if not result.facts.tus:
            for p in result.problems:
                typer.echo(f"reviewer: {p}", err=True)
            raise UserError("no C translation units to read in the given paths")
        doc = facts_document(result, api, with_body=with_body)
        if fmt is FactsFormat.json:
            # json.dumps, not json.dump: only the one-shot dumps uses the C
            # encoder (dump streams through the pure-Python one, 1-2 s on
            # migration/); compact because indent= also forces pure Python.
            sys.stdout.write(json.dumps(doc, separators=(",", ":")))
            sys.stdout.write("\n")
        else:
            # Imported here: jinja2 is only needed for text output.
            from reviewer.report.render import render

            for p in result.problems:
                typer.echo(f"reviewer: {p}", err=True)
            doc = {**doc, "problems": []}
            sys.stdout.write(render("facts.txt.j2", doc=doc, full=full))

    _guard(body)


@app.command()
def demo(
    directory: Annotated[
        str | None,
        typer.Option("--dir", help="Where to create the demo repository (default: a temp dir)."),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo repository.")] = False,
    jobs: JobsOpt = None,
) -> None:
    """Build a small QEMU-like repository with a threadify-style series and review it."""

    def body() -> None:
        from reviewer.demo import run_demo

        sys.stdout.write(run_demo(directory, keep=keep, jobs=jobs))

    _guard(body)


def main() -> None:
    # A run builds a few hundred thousand long-lived, acyclic objects (cached
    # facts, then the report document), and with the default thresholds the
    # cyclic collector rescans them again and again: ~15% of a fully cached run
    # over migration/. Collect rarely instead, as mypy does; reference counting
    # still frees everything.
    gc.set_threshold(200_000, 30, 30)
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.stderr.write("reviewer: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
