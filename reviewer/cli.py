"""Command line. Thin: options in, one call, errors to exit codes.

Exit codes: 0 ok; 1 findings, when the user asked to fail on them; 2 usage or
input error (one line on stderr, no traceback unless --debug).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TypeVar

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
        import importlib.util

        # Whether the walk runs with its compiled helper (reviewer/extract/_walk.c)
        # is the first question when extraction is slower than expected.
        if os.environ.get("REVIEWER_WALK_HELPER", "1") == "0":
            helper = "off (REVIEWER_WALK_HELPER=0)"
        elif importlib.util.find_spec("reviewer.extract._walk") is not None:
            helper = "built"
        else:
            helper = "not built, the walk is pure Python (install with a C compiler)"
        typer.echo(f"reviewer {__version__} (compiled walk helper: {helper})")
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


def _say(message: str) -> None:
    """One line on stderr; text from the tree (file names) cannot drive the terminal."""
    from reviewer.textsafe import inert

    typer.echo(inert(message.replace("\n", " ")), err=True)


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body: UserError and crashes become one line and exit 2."""
    try:
        out = fn()
        sys.stdout.flush()  # a full disk or a closed pipe is reported here, not at exit
        return out
    except UserError as exc:
        if _state["debug"]:
            raise
        _say(f"reviewer: {exc}")
        raise typer.Exit(2) from None
    except BrokenPipeError as exc:
        if not _stdout_closed():
            return _internal(exc)  # one of reviewer's own pipes: a worker died
        # `reviewer scan | head`: the reader has what it wanted; say nothing more.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except OSError as exc:
        # The disk is full, the cache directory is a file or read-only: the
        # environment, not a bug; one line.
        if _state["debug"]:
            raise
        with contextlib.suppress(OSError):  # what is still buffered cannot be written
            sys.stdout.flush()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        where = f"{exc.filename}: " if exc.filename else ""
        _say(f"reviewer: {where}{exc.strerror or exc} (check the disk, --cache-dir or "
             "--output)")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("reviewer: interrupted", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, SystemExit):
        raise
    except Exception as exc:
        return _internal(exc)


def _internal(exc: Exception) -> NoReturn:
    """A bug, or a child that died: one line and exit 2 (--debug shows it)."""
    if _state["debug"]:
        raise exc
    _say(
        f"reviewer: internal error: {type(exc).__name__}: {exc} (rerun with --debug "
        "and report it)",
    )
    raise typer.Exit(2) from None


def _stdout_closed() -> bool:
    """Whether the reader of stdout (fd 1) is gone: a pipe's write end then
    polls as an error. A BrokenPipeError from anywhere else is not `| head`,
    and neither is one with no stdout to poll: it is reported."""
    import select

    try:
        poll = select.poll()
        poll.register(1, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poll.poll(0))
    except (OSError, ValueError):
        return False


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


class ExecutorKind(StrEnum):
    local = "local"
    dask = "dask"


ExecutorOpt = Annotated[
    ExecutorKind,
    typer.Option(
        "--executor",
        help="Where TUs not in the cache are parsed: local processes, or a Dask cluster "
        "(needs the 'distributed' extra).",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="--executor dask: address of a running Dask scheduler (tcp://host:port); "
        "default: start a local cluster of --jobs workers.",
    ),
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Extra API model TOML merged into the built-in one.")
]


def _executor(kind: ExecutorKind, scheduler: str | None) -> Any:
    from reviewer.extract.runner import Executor

    return Executor(kind.value, scheduler)


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
    executor: ExecutorOpt = ExecutorKind.local,
    scheduler: SchedulerOpt = None,
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
        from reviewer.report.facts import facts_document

        top, result = _extract(paths, root, build_dir, resource_dir, cache_dir, no_cache,
                               jobs, _executor(executor, scheduler))
        doc = facts_document(result, _model(model, top), with_body=with_body)
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
                _say(f"reviewer: {p}")
            doc = {**doc, "problems": []}
            sys.stdout.write(render("facts.txt.j2", doc=doc, full=full))

    _guard(body)


class FindingsFormat(StrEnum):
    text = "text"
    json = "json"


class FailOn(StrEnum):
    any = "any"
    never = "never"


def _extract(paths: list[str] | None, root: str | None, build_dir: str | None,
             resource_dir: str | None, cache_dir: str | None, no_cache: bool,
             jobs: int | None, executor: Any) -> Any:
    """Facts for the given paths (default: migration/ and include/migration/);
    (tree root, RunResult). An empty result is a usage error."""
    from reviewer.extract.runner import run
    from reviewer.scan import DEFAULT_PATHS

    given = list(paths or [])
    top = os.path.abspath(root) if root else find_root(given)
    if not given:
        given = [os.path.join(top, d) for d in DEFAULT_PATHS
                 if os.path.isdir(os.path.join(top, d))]
        if not given:
            raise UserError("no paths given and no migration/ here; name files or directories")
    result = run(given, root=top, build_dir=build_dir, resource_dir=resource_dir,
                 cache_dir=cache_dir, use_cache=not no_cache, jobs=jobs, executor=executor)
    if not result.facts.tus:
        for p in result.problems:
            _say(f"reviewer: {p}")
        raise UserError("no C translation units to read in the given paths")
    return top, result


def _analyse(paths: list[str] | None, root: str | None, build_dir: str | None,
             resource_dir: str | None, cache_dir: str | None, no_cache: bool,
             jobs: int | None, model: str | None, select: str | None = None,
             preview: bool = False, executor: Any = None) -> Any:
    from reviewer.analysis.engine import analyze
    from reviewer.rules import all_rules

    top, result = _extract(paths, root, build_dir, resource_dir, cache_dir, no_cache, jobs,
                           executor)
    api = _model(model, top)
    rules = None
    if select:
        known = all_rules()
        ids = [x.strip().upper() for x in select.split(",") if x.strip()]
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UserError(f"--select: unknown rule {', '.join(unknown)} (see reviewer rules)")
        rules = [known[i] for i in ids]
    analysis = analyze(result.facts, api, root=top, rules=rules, debug=_state["debug"],
                       preview=preview)
    return result, analysis


@app.command()
def analyze(
    paths: Annotated[list[str] | None, typer.Argument(help="Files or directories.")] = None,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
    resource_dir: ResourceOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    jobs: JobsOpt = None,
    executor: ExecutorOpt = ExecutorKind.local,
    scheduler: SchedulerOpt = None,
    model: ModelOpt = None,
    select: Annotated[
        str | None, typer.Option("--select", help="Only these rules, e.g. QM003,QM004.")
    ] = None,
    fmt: Annotated[FindingsFormat, typer.Option("--format", "-f", help="Output format.")] = (
        FindingsFormat.text
    ),
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 when there are findings (any).")
    ] = FailOn.never,
    preview: Annotated[
        bool, typer.Option("--preview", help="Also run preview rules (see reviewer rules).")
    ] = False,
) -> None:
    """Run the review rules over a tree (default: migration/ and include/migration/)."""

    def body() -> None:
        from reviewer.report.findings import analysis_document
        from reviewer.report.render import render

        result, analysis = _analyse(paths, root, build_dir, resource_dir, cache_dir, no_cache,
                                    jobs, model, select, preview,
                                    executor=_executor(executor, scheduler))
        doc = analysis_document(result, analysis)
        if fmt is FindingsFormat.json:
            json.dump(doc, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            for p in result.problems:
                _say(f"reviewer: {p}")
            sys.stdout.write(render("findings.txt.j2", doc=doc))
        if fail_on is FailOn.any and analysis.findings:
            raise typer.Exit(1)

    _guard(body)


@app.command()
def contexts(
    function: Annotated[str, typer.Argument(help="Function name.")],
    paths: Annotated[list[str] | None, typer.Argument(help="Files or directories.")] = None,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
    resource_dir: ResourceOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    jobs: JobsOpt = None,
    executor: ExecutorOpt = ExecutorKind.local,
    scheduler: SchedulerOpt = None,
    model: ModelOpt = None,
    fmt: Annotated[FindingsFormat, typer.Option("--format", "-f", help="Output format.")] = (
        FindingsFormat.text
    ),
) -> None:
    """Where FUNCTION can run, whether the BQL is held there, and the call chain."""

    def body() -> None:
        from reviewer.report.findings import contexts_document
        from reviewer.report.render import render

        result, analysis = _analyse(paths, root, build_dir, resource_dir, cache_dir, no_cache,
                                    jobs, model, select="QM100",
                                    executor=_executor(executor, scheduler))
        ctx = analysis.context
        doc = contexts_document(ctx.program, ctx.contexts, function)
        if fmt is FindingsFormat.json:
            json.dump(doc, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(render("contexts.txt.j2", doc=doc,
                                    degraded=len(result.degraded)))
        if not doc["matches"]:
            raise typer.Exit(2)

    _guard(body)


MboxOpt = Annotated[
    str | None, typer.Option("--mbox", help="A series as mailed (mbox), applied on --base.")
]
BaseOpt = Annotated[
    str | None, typer.Option("--base", help="Where to apply --mbox (default: HEAD).")
]
MsgidOpt = Annotated[
    str | None, typer.Option("--msgid", help="Fetch the series with b4 (needs b4 and network).")
]


def _scan_inputs(repo: str, rng: str | None, mbox: str | None, base: str | None,
                 msgid: str | None, build_dir: str | None, paths: list[str] | None,
                 jobs: int | None, cache_dir: str | None, model: str | None, preview: bool,
                 resource_dir: str | None, hide: set[str] | None = None,
                 use_cache: bool = True) -> Any:
    """A range, an mbox or a message-id in; (report, series or None, api) out."""
    import tempfile

    from reviewer.mail.review import fetch_msgid, scan_series
    from reviewer.scan import scan

    top = os.path.abspath(repo)
    api = _model(model, top)
    kw: dict[str, Any] = {"build_dir": build_dir, "paths": paths, "jobs": jobs,
                          "preview": preview, "resource_dir": resource_dir, "baseline": hide,
                          "use_cache": use_cache}
    if msgid and mbox:
        raise UserError("give --mbox or --msgid, not both")
    if (mbox or msgid) and rng:
        raise UserError("give a RANGE or --mbox/--msgid, not both")
    if msgid:
        with tempfile.TemporaryDirectory(prefix="reviewer-b4-") as d:
            path = fetch_msgid(msgid, d)
            report, series = scan_series(top, path, base=base, cache_dir=cache_dir, model=api,
                                         **kw)
        return report, series, api
    if mbox:
        report, series = scan_series(top, mbox, base=base, cache_dir=cache_dir, model=api, **kw)
        return report, series, api
    if base:
        raise UserError("--base applies to --mbox/--msgid; for a range, write BASE..TIP")
    return scan(top, rng, cache_dir=cache_dir, model=api, **kw), None, api


class ScanFormat(StrEnum):
    text = "text"
    markdown = "markdown"
    html = "html"
    json = "json"
    sarif = "sarif"


class ScanFailOn(StrEnum):
    new = "new"
    any = "any"
    never = "never"


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    if os.path.exists(output) and not os.path.isfile(output):
        # A device, a FIFO, /dev/stdout: written in place, never replaced.
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise UserError(f"{output}: cannot write the report ({exc.strerror})") from None
        return
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, output)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UserError(f"{output}: cannot write the report ({exc.strerror})") from None


def _terminal(text: str) -> None:
    """Colour on a terminal, plain text otherwise."""
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        sys.stdout.write(text)
        return
    from rich.console import Console
    from rich.highlighter import RegexHighlighter
    from rich.theme import Theme

    class _H(RegexHighlighter):
        highlights = [  # noqa: RUF012 - rich's API
            r"(?P<error>\[error\])", r"(?P<warning>\[warning\])", r"(?P<new>^  NEW )",
            r"(?P<fixed>^  FIXED)", r"(?P<rule>QM\d{3})", r"(?P<head>^\[\d+/\d+\] .*$)",
        ]

    theme = Theme({"error": "bold red", "warning": "yellow", "new": "bold red",
                   "fixed": "green", "rule": "cyan", "head": "bold"})
    Console(highlighter=_H(), theme=theme, soft_wrap=True).print(
        text, end="", markup=False, emoji=False)


@app.command()
def scan(
    rng: Annotated[
        str | None,
        typer.Argument(metavar="RANGE", help="Commits to review, e.g. origin/master..HEAD "
                       "(default: the branch's commits not in its upstream, else HEAD~1..HEAD)."),
    ] = None,
    repo: Annotated[str, typer.Option("--repo", help="The QEMU repository.")] = ".",
    build_dir: BuildDirOpt = None,
    paths: Annotated[
        list[str] | None,
        typer.Option("--paths", help="Scope (repeatable; default migration/, include/migration/ "
                     "and the .c files the range touches)."),
    ] = None,
    resource_dir: ResourceOpt = None,
    cache_dir: CacheOpt = None,
    jobs: JobsOpt = None,
    model: ModelOpt = None,
    fmt: Annotated[ScanFormat, typer.Option("--format", "-f", help="Report format.")] = (
        ScanFormat.text
    ),
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the report here.")
                      ] = None,
    fail_on: Annotated[ScanFailOn, typer.Option("--fail-on", help="Exit 1 on new findings, "
                                                "on any finding at the tip, or never.")
                       ] = ScanFailOn.never,
    preexisting: Annotated[
        bool, typer.Option("--preexisting", help="Also list pre-existing findings in the "
                           "functions each patch touches.")
    ] = False,
    baseline: Annotated[str | None, typer.Option("--baseline", help="Hide findings listed "
                                                 "in this baseline file.")] = None,
    write_baseline_to: Annotated[
        str | None, typer.Option("--write-baseline", help="Record the tip's findings here.")
    ] = None,
    preview: Annotated[bool, typer.Option("--preview", help="Also run preview rules.")] = False,
    mbox: MboxOpt = None,
    base: BaseOpt = None,
    msgid: MsgidOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-analyse every version "
                                           "(facts are still cached per TU).")] = False,
) -> None:
    """Review a range of commits (or a mailed series) patch by patch: new, fixed,
    context changes."""

    def body() -> None:
        from reviewer.report.render import render
        from reviewer.report.sarif import sarif_document
        from reviewer.report.scan import scan_document
        from reviewer.scan import read_baseline, write_baseline

        hide = read_baseline(baseline) if baseline else None
        report, _, _ = _scan_inputs(repo, rng, mbox, base, msgid, build_dir, paths, jobs,
                                    cache_dir, model, preview, resource_dir, hide,
                                    use_cache=not no_cache)
        doc = scan_document(report, show_preexisting=preexisting)
        if fmt is ScanFormat.json:
            _write(json.dumps(doc, indent=1) + "\n", output)
        elif fmt is ScanFormat.sarif:
            _write(json.dumps(sarif_document(report), indent=1) + "\n", output)
        else:
            name = {"text": "scan.txt.j2", "markdown": "scan.md.j2", "html": "scan.html.j2"}
            text = render(name[fmt.value], doc=doc, show_preexisting=preexisting,
                          max_contexts=10)
            if fmt is ScanFormat.text and output is None:
                for p in report.problems:
                    _say(f"reviewer: {p}")
                _terminal(text)
            else:
                _write(text, output)
        if write_baseline_to:
            write_baseline(write_baseline_to, report)
        new = sum(len(p.new) for p in report.patches)
        if (fail_on is ScanFailOn.new and new) or (fail_on is ScanFailOn.any and report.tip):
            raise typer.Exit(1)

    _guard(body)


@app.command()
def reply(
    rng: Annotated[str | None, typer.Argument(metavar="RANGE", help="Commits (as for scan).")
                   ] = None,
    repo: Annotated[str, typer.Option("--repo", help="The QEMU repository.")] = ".",
    mbox: MboxOpt = None,
    base: BaseOpt = None,
    msgid: MsgidOpt = None,
    output: Annotated[str | None, typer.Option("--output", "-o",
                                               help="Write the drafts to this mbox file.")
                      ] = None,
    output_dir: Annotated[str | None, typer.Option("--output-dir",
                                                   help="Write one .eml per draft here.")
                          ] = None,
    cover: Annotated[bool, typer.Option("--cover", help="Also reply to the cover letter with "
                                        "the series summary.")] = False,
    template: Annotated[str | None, typer.Option("--template", help="Jinja2 template for the "
                                                 "body (default templates/reply.txt.j2).")
                        ] = None,
    sender: Annotated[str | None, typer.Option("--from", help="From: (default: git config "
                                               "user.name/user.email).")] = None,
    build_dir: BuildDirOpt = None,
    paths: Annotated[list[str] | None, typer.Option("--paths", help="Scope, as for scan.")
                     ] = None,
    resource_dir: ResourceOpt = None,
    cache_dir: CacheOpt = None,
    jobs: JobsOpt = None,
    model: ModelOpt = None,
    preview: Annotated[bool, typer.Option("--preview", help="Also run preview rules.")] = False,
) -> None:
    """Draft replies to a series, one per patch with new findings (plain text,
    interleaved, threaded under the original)."""

    def body() -> None:
        from reviewer.mail.reply import write_eml_dir, write_mbox
        from reviewer.mail.review import mail_of_commits, replies, user_identity
        from reviewer.report.scan import scan_document

        who = user_identity(os.path.abspath(repo), sender)
        report, series, _ = _scan_inputs(repo, rng, mbox, base, msgid, build_dir, paths, jobs,
                                         cache_dir, model, preview, resource_dir)
        if series is not None:
            mails = {p.commit.sha: mp for p, mp in zip(report.patches, series.patches,
                                                       strict=True)}
            cov = series.cover
        else:
            mails = mail_of_commits(os.path.abspath(repo), report)
            cov = None
        doc = scan_document(report)
        msgs = replies(report, mails, cov, sender=who, template=template, with_cover=cover,
                       doc=doc)
        if output_dir:
            for name in write_eml_dir(output_dir, msgs):
                typer.echo(name)
        elif output:
            write_mbox(output, msgs)
            typer.echo(f"{len(msgs)} draft{'s' if len(msgs) != 1 else ''} written to {output}")
        else:
            for m in msgs:
                sys.stdout.write(m.as_string())
                sys.stdout.write("\n")
        if not msgs:
            typer.echo("no new findings: nothing to reply", err=True)

    _guard(body)


@app.command("b4-check")
def b4_check_cmd(
    repo: Annotated[str, typer.Option("--repo", help="The QEMU repository.")] = ".",
    base: BaseOpt = None,
    build_dir: BuildDirOpt = None,
    cache_dir: CacheOpt = None,
    model: ModelOpt = None,
) -> None:
    """b4's per-patch check: one patch email on stdin, a JSON list on stdout
    (git config b4.review-perpatch-check-cmd "reviewer b4-check")."""

    def body() -> None:
        from reviewer.mail.review import b4_check

        raw = sys.stdin.buffer.read()
        if not raw.strip():
            raise UserError("b4-check reads one patch email on stdin; got nothing")
        top = os.path.abspath(repo)
        out = b4_check(raw, top, base=base, cache_dir=cache_dir, model=_model(model, top),
                       build_dir=build_dir, progress=False)
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")

    _guard(body)


@app.command()
def check(
    files: Annotated[list[str] | None, typer.Argument(
        help="Ignored (pre-commit passes the staged files; reviewer reads the index).")] = None,
    repo: Annotated[str, typer.Option("--repo", help="The QEMU checkout.")] = ".",
    from_ref: Annotated[str | None, typer.Option(
        "--from-ref", envvar="PRE_COMMIT_FROM_REF",
        help="Compare two refs instead of the index with HEAD (pre-push).")] = None,
    to_ref: Annotated[str | None, typer.Option("--to-ref", envvar="PRE_COMMIT_TO_REF",
                                               help="See --from-ref.")] = None,
    paths: Annotated[list[str] | None, typer.Option("--paths", help="Scope, as for scan.")
                     ] = None,
    build_dir: BuildDirOpt = None,
    resource_dir: ResourceOpt = None,
    cache_dir: CacheOpt = None,
    jobs: JobsOpt = None,
    model: ModelOpt = None,
    preview: Annotated[bool, typer.Option("--preview", help="Also run preview rules.")] = False,
) -> None:
    """Pre-commit hook: fail (exit 1) on findings the staged change introduces."""

    def body() -> None:
        from reviewer.check import check as run_check
        from reviewer.report.render import render

        top = os.path.abspath(repo)
        result = run_check(top, from_ref=from_ref, to_ref=to_ref, paths=paths,
                           build_dir=build_dir, cache_dir=cache_dir, jobs=jobs,
                           model=_model(model, top), preview=preview,
                           resource_dir=resource_dir)
        text = render("check.txt.j2", r=result)
        if result.new:
            _terminal(text)
            raise typer.Exit(1)
        if text.strip():
            sys.stdout.write(text)

    _guard(body)


class AuditFormat(StrEnum):
    text = "text"
    markdown = "markdown"
    html = "html"
    json = "json"
    sarif = "sarif"


@app.command()
def audit(
    paths: Annotated[list[str] | None, typer.Argument(
        help="Files or directories (default: the whole tree: every TU of the compile "
             "database, or every .c file in no-build mode).")] = None,
    root: RootOpt = None,
    entry: Annotated[str | None, typer.Option("--entry", help="Audit what this function "
                                              "reaches.")] = None,
    thread: Annotated[str | None, typer.Option("--thread", help="Audit what this thread "
                                               "reaches (default: mig/dst/main; with --diff, "
                                               "every entry point).")] = None,
    rev: Annotated[str | None, typer.Option("--rev", help="Audit this revision (read from "
                                            "git, not the work tree).")] = None,
    diff_revs: Annotated[tuple[str, str] | None, typer.Option(
        "--diff", help="Compare two revisions: hooks that lost the BQL first.")] = None,
    fields: Annotated[list[str] | None, typer.Option(
        "--field", help="Also audit functions called through this Struct.field "
                        "(repeatable).")] = None,
    build_dir: BuildDirOpt = None,
    resource_dir: ResourceOpt = None,
    cache_dir: CacheOpt = None,
    jobs: JobsOpt = None,
    model: ModelOpt = None,
    fmt: Annotated[AuditFormat, typer.Option("--format", "-f", help="Report format.")] = (
        AuditFormat.text
    ),
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write it here.")
                      ] = None,
    fail_on_problem: Annotated[bool, typer.Option(
        "--fail-on-problem", help="Exit 1 if a hook that needs the BQL may arrive without "
                                  "it.")] = False,
    executor: ExecutorOpt = ExecutorKind.local,
    scheduler: SchedulerOpt = None,
) -> None:
    """Which device load hooks run without the BQL, and which of them need it."""

    def body() -> None:
        from reviewer.audit import DEFAULT_HOOKS, diff, run_audit
        from reviewer.report.audit import audit_sarif
        from reviewer.report.render import render

        top = os.path.abspath(root) if root else find_root(paths or [])
        api = _model(model, top)
        hooks = tuple(dict.fromkeys([*DEFAULT_HOOKS, *(fields or [])]))
        kw: dict[str, Any] = {"entry": entry, "thread": thread, "fields": hooks,
                              "paths": paths, "build_dir": build_dir, "cache_dir": cache_dir,
                              "jobs": jobs, "model": api, "resource_dir": resource_dir,
                              "executor": _executor(executor, scheduler)}
        if diff_revs:
            # Across a series the entry may not exist on both sides (the thread
            # the series adds): without --entry/--thread, compare what every
            # entry point reaches, which is the question a series raises.
            kw.update(everything=not (entry or thread), missing_ok=True)
            old, new = (run_audit(top, rev=r, **kw) for r in diff_revs)
            changes = diff(old.hooks, new.hooks)
            if fmt is AuditFormat.json:
                _write(json.dumps({"schema": 1, "old": old.to_json(), "new": new.to_json(),
                                   "changes": [{**c.__dict__, "lost_bql": c.lost_bql}
                                               for c in changes]}, indent=1) + "\n", output)
            else:
                _write(render("audit-diff.txt.j2", old=diff_revs[0], new=diff_revs[1],
                              entry=new.entry, changes=changes), output)
            return
        result = run_audit(top, rev=rev, **kw)
        doc = result.to_json()
        if fmt is AuditFormat.json:
            _write(json.dumps(doc, indent=1) + "\n", output)
        elif fmt is AuditFormat.sarif:
            _write(json.dumps(audit_sarif(result), indent=1) + "\n", output)
        else:
            name = {"text": "audit.txt.j2", "markdown": "audit.md.j2", "html": "audit.html.j2"}
            _write(render(name[fmt.value], doc=doc), output)
        if fail_on_problem and doc["counts"]["problems"]:
            raise typer.Exit(1)

    _guard(body)


@app.command("rules")
def rules_cmd() -> None:
    """List the review rules."""

    def body() -> None:
        from reviewer.report.render import render
        from reviewer.rules import all_rules

        sys.stdout.write(render("rules.txt.j2", rules=list(all_rules().values())))

    _guard(body)


@app.command()
def explain(rule_id: Annotated[str, typer.Argument(help="Rule ID or name, e.g. QM003.")]) -> None:
    """Print a rule's documentation."""

    def body() -> None:
        from reviewer.report.render import render
        from reviewer.rules import get_rule

        rule = get_rule(rule_id)
        if rule is None:
            raise UserError(f"no rule {rule_id!r}; `reviewer rules` lists them")
        sys.stdout.write(render("explain.txt.j2", rule=rule))

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
    if sys.stdout is None:
        # Started with stdout closed (`reviewer ... >&-`): what would go there
        # goes nowhere, as with > /dev/null; -o FILE still works.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.stderr.write("reviewer: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
