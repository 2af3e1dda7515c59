"""Stand-ins for QEMU's generated headers in no-build mode (reviewer/extract/synth.py).

The fixture tree fixtures/nobuild/ has a small QAPI schema and trace-events
files of our own, and a TU that includes the headers a build would generate.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from reviewer.extract import clangwalk
from reviewer.extract.flags import find_resource_dir, nobuild_args, plan_flags, synth_include_dir
from reviewer.extract.runner import run
from reviewer.extract.synth import (
    SchemaError,
    c_name,
    camel_to_upper,
    enum_const,
    generate,
    generated_include_dir,
    parse_schema,
    trace_header_name,
)

from .conftest import FIXTURES

TREE = os.path.join(FIXTURES, "nobuild")
TU = os.path.join(TREE, "migration", "xfer.c")


def _calls(facts: clangwalk.TUFacts) -> dict[str, list[tuple[str, ...]]]:
    out: dict[str, list[tuple[str, ...]]] = {}
    for c in facts.calls:
        out.setdefault(c.callee, []).append(tuple(c.args))
    return out


def test_tu_parses_without_errors_with_the_stand_ins(tmp_path: object) -> None:
    result = run(["migration/xfer.c"], root=TREE, cache_dir=str(tmp_path), jobs=1, progress=False)
    (tu,) = result.facts.tus
    assert result.plan.mode == "nobuild"
    assert (tu.errors, tu.missing_headers) == (0, ()), tu.diagnostics
    calls = _calls(tu)
    # Arguments naming QAPI enum constants: the calls libclang used to drop.
    assert calls["xfer_set_state"] == [("&current", "XFER_STATUS_ACTIVE", "XFER_STATUS_DONE")]
    assert calls["qmp_xfer_start"] == [
        ('"unix:/tmp/sock"', "false", "NULL", "true", "false", "errp")
    ]
    assert calls["qapi_event_send_xfer_state"] == [("new_state", '"changed"')]
    assert calls["qapi_event_send_xfer_done"] == [()]
    assert calls["trace_xfer_set_state"] == [("old_state", "new_state")]
    assert calls["trace_xfer_done"] == [()]
    assert calls["qapi_enum_lookup"] == [("current",)]  # XferStatus_str() is a macro
    assert "bql_lock" in calls and "bql_unlock" in calls


def test_without_the_stand_ins_the_same_tu_is_degraded() -> None:
    """The contrast that motivates synth.py: the same flags minus the stand-ins."""
    args, _ = nobuild_args(TREE, synth_include_dir())
    flag, rdir = find_resource_dir()
    args += ["-I", os.path.dirname(TU), flag, rdir]
    facts, _ = clangwalk.extract(TU, args, root=TREE, mode="nobuild")
    assert facts.errors > 0
    assert "qapi/qapi-types-migration.h" in facts.missing_headers
    calls = _calls(facts)
    assert "xfer_set_state" not in calls  # dropped: its arguments name undeclared enums


def test_build_mode_flags_do_not_use_the_stand_ins(tmp_path: object) -> None:
    build = os.path.join(str(tmp_path), "build")
    os.makedirs(build)
    entry = {"directory": build, "file": TU, "arguments": ["cc", "-c", TU, "-o", "x.o"]}
    with open(os.path.join(build, "compile_commands.json"), "w", encoding="utf-8") as fh:
        json.dump([entry], fh)
    cache = os.path.join(str(tmp_path), "cache")
    plan = plan_flags(TREE, build, cache_root=cache)
    assert plan.mode == "build"
    other = os.path.join(TREE, "migration", "other.c")  # no entry: no-build flags
    for path in (TU, other):
        assert not any("reviewer-generated" in a for a in plan.args_for(path))
    assert not os.path.exists(cache) or not any(
        d.startswith("reviewer-generated") for d in os.listdir(cache)
    )


def test_build_mode_parses_without_warnings_unless_they_are_errors(tmp_path: object) -> None:
    """Only errors are facts: -w spares clang the warnings, but not under
    -Werror, where it would drop the promoted ones too."""
    build = os.path.join(str(tmp_path), "build")
    os.makedirs(build)
    other = os.path.join(TREE, "migration", "other.c")
    entries = [{"directory": build, "file": TU, "arguments": ["cc", "-Wall", "-c", TU]},
               {"directory": build, "file": other,
                "arguments": ["cc", "-Wall", "-Werror", "-c", other]}]
    with open(os.path.join(build, "compile_commands.json"), "w", encoding="utf-8") as fh:
        json.dump(entries, fh)
    plan = plan_flags(TREE, build, cache_root=os.path.join(str(tmp_path), "cache"))
    assert "-w" in plan.args_for(TU)
    assert "-w" not in plan.args_for(other)


def test_qapi_shapes() -> None:
    headers, problems = generate(TREE)
    assert problems == []
    types = headers["qapi/qapi-types-migration.h"]
    # Optional members: has_ for scalars and lists, none for pointers.
    assert "    bool has_status;\n    XferStatus status;\n    XferStats *ram;\n" in types
    assert "    bool has_blocked_reasons;\n    strList *blocked_reasons;\n" in types
    assert "    bool q_default;\n" in types
    # Base members first; flat-union and alternate branches by value, after
    # the structs they hold.
    assert "    char *id;\n    char *filename;\n    uint64_t offset;\n" in types
    assert "        XferFileArgs file;\n" in types and "        XferAddress address;\n" in types
    assert types.index("struct XferFileArgs {") < types.index("struct XferAddress {")
    assert types.index("struct XferAddress {") < types.index("struct XferTarget {")
    # Conditional constants, _MAX, _str and the lookup table.
    assert "#if defined(CONFIG_REPLICATION)\n    XFER_STATUS_COLO,\n#endif" in types
    assert "#if (defined(CONFIG_MARS)) && (defined(CONFIG_POSIX))\n" in types
    assert "    XFER_STATUS__MAX,\n} XferStatus;" in types
    assert "extern const QEnumLookup XferStatus_lookup;" in types
    assert '#include "qapi-types-common.h"' in types
    commands = headers["qapi/qapi-commands-migration.h"]
    assert (
        "void qmp_xfer_start(const char *uri, bool has_channels, XferChannelList *channels, "
        "bool has_detach, bool detach, Error **errp);"
    ) in commands
    assert "XferInfo *qmp_query_xfer(Error **errp);" in commands
    assert "void qmp_xfer_set_capabilities(XferFileArgs *arg, Error **errp);" in commands
    assert "void coroutine_fn qmp_xfer_flush(bool deep, Error **errp);" in commands
    assert "qmp_xfer_by_hand" not in commands  # 'gen': false
    events = headers["qapi/qapi-events-migration.h"]
    assert "void qapi_event_send_xfer_state(XferStatus status, const char *reason);" in events
    assert "QAPI_EVENT_XFER_DONE," in headers["qapi/qapi-emit-events.h"]
    assert "    QTYPE_QBOOL,\n" in headers["qapi/qapi-builtin-types.h"]
    assert '#include "qapi-types-migration.h"' in headers["qapi/qapi-types.h"]
    trace = headers["trace/trace-migration.h"]
    assert "static inline void trace_xfer_chunk(const char *name, uint64_t len) { }" in trace
    assert "#define TRACE_XFER_CHUNK_ENABLED 0" in trace  # 'disable'
    assert "trace/trace-hw_widget.h" in headers
    assert '"1.2.3"' in headers["qemu-version.h"]


@pytest.mark.parametrize(
    ("name", "upper"),
    [
        ("XferStatus", "XFER_STATUS"),
        ("RDMAMode", "RDMA_MODE"),
        ("QXferFlag", "QXFER_FLAG"),
        ("IOThreadInfo", "IO_THREAD_INFO"),
        ("S390CpuState", "S390_CPU_STATE"),
        ("Name2Value", "NAME2_VALUE"),
        ("ALREADY_UPPER", "ALREADY_UPPER"),
    ],
)
def test_camel_to_upper(name: str, upper: str) -> None:
    assert camel_to_upper(name) == upper


def test_c_names() -> None:
    assert enum_const("QXferFlag", "slow.path") == "QXFER_FLAG_SLOW_PATH"
    assert enum_const("OnOffAuto", "auto", "SWITCH") == "SWITCH_AUTO"
    assert c_name("default") == "q_default" and c_name("unix") == "q_unix"
    assert c_name("total-time") == "total_time"
    assert c_name("int", protect=False) == "int"


def test_schema_syntax() -> None:
    text = """
    # a comment with 'quotes' and { braces }
    { 'enum': 'E', 'data': [ 'a', 'b\\'c' ], 'if': 'X' }  # trailing
    { 'struct': 'S', 'data': {}, 'boxed': true }
    """
    assert parse_schema(text) == [
        {"enum": "E", "data": ["a", "b'c"], "if": "X"},
        {"struct": "S", "data": {}, "boxed": True},
    ]
    with pytest.raises(SchemaError):
        parse_schema("{ 'enum': 'E', ")
    with pytest.raises(SchemaError):
        parse_schema("{ 'enum': 3 }")


def test_unreadable_schema_file_is_reported(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "tree")
    shutil.copytree(TREE, root)
    with open(os.path.join(root, "qapi", "common.json"), "a", encoding="utf-8") as fh:
        fh.write("{ 'enum': \n")
    headers, problems = generate(root)
    assert problems and problems[0].startswith("qapi/common.json:")
    assert "qapi/qapi-types-migration.h" in headers  # the rest is still written


def test_trace_header_names() -> None:
    assert trace_header_name(TREE, "migration/trace-events") == "trace-migration.h"
    assert trace_header_name(TREE, "hw/widget/trace-events") == "trace-hw_widget.h"
    assert trace_header_name(TREE, "trace-events") == "trace-root.h"


def test_regenerated_only_when_inputs_change(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "tree")
    shutil.copytree(TREE, root)
    cache = os.path.join(str(tmp_path), "cache")
    d, _ = generated_include_dir(root, cache)
    trace = os.path.join(d, "trace", "trace-migration.h")
    types = os.path.join(d, "qapi", "qapi-types-migration.h")
    before = {p: os.stat(p).st_mtime_ns for p in (trace, types)}
    assert generated_include_dir(root, cache)[0] == d
    assert {p: os.stat(p).st_mtime_ns for p in (trace, types)} == before
    with open(os.path.join(root, "migration", "trace-events"), "a", encoding="utf-8") as fh:
        fh.write("xfer_new_point(int fd) \"fd %d\"\n")
    assert generated_include_dir(root, cache)[0] == d
    with open(trace, encoding="utf-8") as fh:
        assert "trace_xfer_new_point(int fd)" in fh.read()
    # Only the changed stand-in is rewritten: the fact cache keeps the others.
    assert os.stat(types).st_mtime_ns == before[types]


def test_a_stand_in_no_longer_generated_goes(tmp_path: object) -> None:
    """A version without migration/trace-events has no trace-migration.h
    stand-in: a TU that includes it must not find the previous version's."""
    root = os.path.join(str(tmp_path), "tree")
    shutil.copytree(TREE, root)
    cache = os.path.join(str(tmp_path), "cache")
    d, _ = generated_include_dir(root, cache)
    trace = os.path.join(d, "trace", "trace-migration.h")
    assert os.path.exists(trace)
    os.unlink(os.path.join(root, "migration", "trace-events"))
    replaced: dict[str, bytes | None] = {}
    assert generated_include_dir(root, cache, replaced)[0] == d
    assert not os.path.exists(trace)
    assert replaced.get(trace) is not None  # its old text, for the carry-over


def test_fact_cache_follows_the_stand_ins(tmp_path: object) -> None:
    """The stand-ins a TU includes are among the headers its cache entry
    hashes: changing one reparses that TU, changing another does not."""
    root = os.path.join(str(tmp_path), "tree")
    shutil.copytree(TREE, root)
    cache = os.path.join(str(tmp_path), "cache")

    def once() -> tuple[int, clangwalk.TUFacts]:
        r = run(["migration/xfer.c"], root=root, cache_dir=cache, jobs=1, progress=False)
        return r.parsed, r.facts.tus[0]

    assert once()[0] == 1
    assert once()[0] == 0
    with open(os.path.join(root, "hw", "widget", "trace-events"), "a", encoding="utf-8") as fh:
        fh.write("widget_reset(void) \"\"\n")
    assert once()[0] == 0  # trace-hw_widget.h is not included by xfer.c
    events = os.path.join(root, "migration", "trace-events")
    with open(events, encoding="utf-8") as fh:
        text = fh.read()
    with open(events, "w", encoding="utf-8") as fh:
        fh.write(text.replace("xfer_done(void)", "xfer_done(int code)"))
    parsed, facts = once()
    assert parsed == 1
    assert facts.errors > 0  # trace_xfer_done() now lacks its argument


def test_a_regenerated_stand_in_is_carried_over_like_a_header(tmp_path: object) -> None:
    """A scan hands the stand-ins a version rewrote, with their old text, to
    the carry-over: a trace event the TU does not use keeps its facts; one it
    calls changed makes it parse again. Either way, what a parse gives."""
    root = os.path.join(str(tmp_path), "tree")
    shutil.copytree(TREE, root)
    cache = os.path.join(str(tmp_path), "cache")

    def step(previous: dict[str, bytes | None] | None) -> object:
        plan = plan_flags(root, None, None, cache)
        if previous is not None:
            previous = {**plan.replaced, **previous}
        return run(["migration/xfer.c"], root=root, plan=plan, cache_dir=cache, jobs=1,
                   progress=False, previous=previous)

    def fresh() -> object:
        # The same cache directory (the stand-ins' paths are in the facts), unused.
        return run(["migration/xfer.c"], root=root, cache_dir=cache, use_cache=False, jobs=1,
                   progress=False).facts.tus

    assert step(None).parsed == 1  # type: ignore[attr-defined]
    events = os.path.join(root, "migration", "trace-events")
    for old, new, parsed in (("xfer_done(void)", "xfer_unused(int x) \"\"\nxfer_done(void)", 0),
                             ("xfer_done(void)", "xfer_done(int code)", 1)):
        with open(events, "rb") as fb:
            before = fb.read()
        with open(events, "w", encoding="utf-8") as fh:
            fh.write(before.decode().replace(old, new))
        got = step({events: before})
        assert (got.parsed, got.carried) == (parsed, 1 - parsed)  # type: ignore[attr-defined]
        assert got.facts.tus == fresh()  # type: ignore[attr-defined]
