"""Compiler flags for libclang: build mode, no-build mode, and the resource directory.

The PyPI libclang wheel has no clang builtin headers (stddef.h, stdbool.h, ...).
Without them `bool`/`true` are undefined and libclang silently drops exactly the
calls a review needs (DOMAIN.md), so a resource directory is not optional: we
find one or refuse to run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

from reviewer.errors import UserError
from reviewer.extract.synth import generated_include_dir

# Keys of the synthesised config-host.h in no-build mode: without CONFIG_LINUX /
# CONFIG_POSIX most of postcopy-ram.c and friends vanish behind #ifdef.
# CONFIG_AVX512BW_OPT (xbzrle.c's vector encoder) and HAVE_IBV_ADVISE_MR (rdma.c)
# are what an x86-64 Linux build with rdma-core configures.
_CONFIG_HOST = """\
/* Synthesised by reviewer (no-build mode): a minimal config-host.h. */
#define CONFIG_LINUX 1
#define CONFIG_POSIX 1
#define CONFIG_SOFTMMU 1
#define CONFIG_SYSTEM_ONLY 1
#define CONFIG_EVENTFD 1
#define CONFIG_LINUX_IO_URING 1
#define CONFIG_MADVISE 1
#define CONFIG_POSIX_MADVISE 1
#define CONFIG_PREADV 1
#define CONFIG_SENDFILE 1
#define CONFIG_THREAD_SETNAME_BYTHREAD 1
#define CONFIG_PTHREAD_SETNAME_NP_W_TID 1
#define CONFIG_REPLICATION 1
#define CONFIG_RDMA 1
#define CONFIG_ZSTD 1
#define CONFIG_ZLIB 1
#define CONFIG_TRACE_LOG 1
#define CONFIG_GETRANDOM 1
#define CONFIG_VHOST_USER 1
#define CONFIG_KVM_TARGETS 1
#define HOST_X86_64 1
#define QEMU_VERSION "10.0.0"
#define QEMU_VERSION_MAJOR 10
#define QEMU_VERSION_MINOR 0
#define QEMU_VERSION_MICRO 0
#define QEMU_PKGVERSION ""
#define CONFIG_HOST_DSOSUF ".so"
#define CONFIG_BINDIR "/usr/local/bin"
#define CONFIG_PREFIX "/usr/local"
#define CONFIG_QEMU_CONFDIR "/usr/local/etc/qemu"
#define CONFIG_QEMU_DATADIR "/usr/local/share/qemu"
#define CONFIG_QEMU_MODDIR "/usr/local/lib/qemu"
#define CONFIG_QEMU_LOCALSTATEDIR "/var/local"
#define CONFIG_IOVEC 1
#define CONFIG_FDATASYNC 1
#define CONFIG_INOTIFY1 1
#define CONFIG_SPLICE 1
#define CONFIG_SYNC_FILE_RANGE 1
#define CONFIG_TIMERFD 1
#define CONFIG_FALLOCATE 1
#define CONFIG_OPEN_BY_HANDLE 1
#define CONFIG_AVX512BW_OPT 1
#define HAVE_IBV_ADVISE_MR 1
"""


def find_resource_dir(explicit: str | None = None) -> tuple[str, str]:
    """Return (flag, directory): how to give libclang its builtin headers.

    Order: --resource-dir / REVIEWER_RESOURCE_DIR, the clang-tidy wheel's resource
    directory (installed with reviewer), a system clang's own resource
    directory, Debian's /usr/lib/llvm-*/lib/clang/*, then the C compiler's builtin
    include directory (gcc's works, and gcc is on every machine that builds QEMU).
    """
    explicit = explicit or os.environ.get("REVIEWER_RESOURCE_DIR")
    if explicit:
        if os.path.isfile(os.path.join(explicit, "include", "stddef.h")):
            return "-resource-dir", explicit
        if os.path.isfile(os.path.join(explicit, "stddef.h")):
            return "-isystem", explicit
        raise UserError(
            f"--resource-dir {explicit}: no stddef.h there (give a clang resource "
            "directory or a compiler's builtin include directory)"
        )
    wheel = _wheel_resource_dir()
    if wheel:
        return "-resource-dir", wheel
    for clang in ("clang", *(f"clang-{v}" for v in range(21, 13, -1))):
        exe = shutil.which(clang)
        if exe:
            out = _run([exe, "-print-resource-dir"])
            if out and os.path.isfile(os.path.join(out, "include", "stddef.h")):
                return "-resource-dir", out
    cands = sorted(glob.glob("/usr/lib/llvm-*/lib/clang/*/include/stddef.h"), key=_version_key)
    for cand in reversed(cands):
        if "llvm-14" in cand:  # clang 14's headers broke vector intrinsics on QEMU
            continue
        return "-resource-dir", os.path.dirname(os.path.dirname(cand))
    for cc in (os.environ.get("CC", ""), "gcc", "cc"):
        exe = shutil.which(cc) if cc else None
        if exe:
            out = _run([exe, "-print-file-name=include"])
            if out and os.path.isfile(os.path.join(out, "stddef.h")):
                return "-isystem", out
    raise UserError(
        "no compiler builtin headers found for libclang: install gcc or clang "
        "(apt-get install gcc), or pass --resource-dir DIR"
    )


def _wheel_resource_dir() -> str:
    """The clang resource directory shipped by the clang-tidy wheel (a dependency):
    clang 18's own builtin headers, matching the libclang wheel, with no system
    package needed."""
    try:
        import clang_tidy  # type: ignore[import-untyped]
    except ImportError:
        return ""
    base = os.path.join(os.path.dirname(clang_tidy.__file__), "data", "lib", "clang")
    for cand in sorted(glob.glob(os.path.join(base, "*", "include", "stddef.h")), reverse=True):
        return os.path.dirname(os.path.dirname(cand))
    return ""


def _version_key(path: str) -> tuple[int, ...]:
    nums = [int(p) for p in path.replace("-", "/").split("/") if p.isdigit()]
    return tuple(nums)


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=20, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def glib_cflags() -> list[str]:
    out = _run(["pkg-config", "--cflags", "glib-2.0"])
    return shlex.split(out) if out else []


@dataclass
class CompileEntry:
    """One compile_commands.json entry; the command is split only when used
    (QEMU's database has ~3000 entries and shlex is slow)."""

    file: str  # absolute
    directory: str
    raw: dict[str, object]
    _args: list[str] | None = None

    @property
    def args(self) -> list[str]:
        """Flags for libclang: no compiler, no -c/-o/-M*, no source file."""
        if self._args is None:
            arguments = self.raw.get("arguments")
            if isinstance(arguments, list):
                argv = [str(a) for a in arguments]
            else:
                argv = split_command(str(self.raw.get("command", "")))
            self._args = _clean_args(argv, self.file, self.directory)
        return self._args


@dataclass
class FlagPlan:
    """How each TU of a run gets its flags."""

    root: str
    mode: str  # "build" or "nobuild"
    resource: tuple[str, str]
    entries: dict[str, CompileEntry] = field(default_factory=dict)
    nobuild_args: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # When the files are read from another copy of the tree (a scan's scratch
    # tree), the source root the compile database was made for: its paths in
    # include flags are mapped onto `root`.
    source_root: str = ""
    # No-build stand-ins this plan rewrote, with what they held before (None:
    # new), for a scan's carry-over (synth.generated_include_dir).
    replaced: dict[str, bytes | None] = field(default_factory=dict, repr=False,
                                              compare=False)
    # args_for() by path: a run asks twice per TU (cache key, then the parse).
    _args: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)

    def entry_for(self, path: str) -> CompileEntry | None:
        path = os.path.normpath(os.path.abspath(path))
        if self.source_root and (path + os.sep).startswith(self.root + os.sep):
            path = os.path.join(self.source_root, os.path.relpath(path, self.root))
        return self.entries.get(path)

    def args_for(self, path: str) -> list[str]:
        path = os.path.normpath(os.path.abspath(path))
        got = self._args.get(path)
        if got is None:
            got = self._args[path] = self._args_for(path)
        return list(got)

    def _args_for(self, path: str) -> list[str]:
        entry = self.entry_for(path)
        flag, rdir = self.resource
        extra = [flag, rdir] if flag == "-resource-dir" else ["-isystem", rdir]
        if entry is not None:
            args = self._remap(entry.args, entry.directory) if self.source_root else entry.args
            # Only errors are facts; warnings cost ~6% of a parse to find. Not
            # with -Werror, whose promoted warnings -w would drop as well.
            quiet = [] if any(a.startswith("-Werror") for a in args) else ["-w"]
            return [*args, *quiet, f"-working-directory={entry.directory}", *extra]
        return [*self.nobuild_args, "-I", os.path.dirname(path), *extra]

    def _remap(self, args: list[str], directory: str) -> list[str]:
        out: list[str] = []
        src = self.source_root
        pending = False
        for a in args:
            prefix, value = "", a
            if pending:
                pending = False
            elif a in ("-I", "-iquote", "-isystem", "-include", "-idirafter"):
                out.append(a)
                pending = True
                continue
            else:
                for p in ("-I", "-iquote", "-isystem", "-include", "-idirafter"):
                    if a.startswith(p) and len(a) > len(p):
                        prefix, value = p, a[len(p):]
                        break
                else:
                    out.append(a)
                    continue
            full = os.path.normpath(os.path.join(directory, value))
            if (full + os.sep).startswith(src + os.sep) or full == src:
                value = os.path.join(self.root, os.path.relpath(full, src))
            out.append(prefix + value)
        return out

    def digest(self, path: str) -> str:
        """The flags, with the tree's own location left out: the same sources
        read from another copy of the tree (a scan's or an audit's scratch
        tree) give the same facts, which are root-relative."""
        text = "\0".join(self.args_for(path)).replace(self.root + os.sep, "<root>/")
        if self.source_root:
            text = text.replace(self.source_root + os.sep, "<root>/")
        # surrogateescape: a non-UTF-8 file name must not end the run.
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def include_search(args: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Where a TU's `#include` looks, in the compiler's order, as absolute
    directories: (-iquote dirs, searched for "..." only after the includer's
    own directory; then -I, -isystem and -idirafter dirs, for both forms).
    The compiler's built-in system directories come after these and are not
    listed: a header found nowhere here is unknown to the caller."""
    cwd = next((a.split("=", 1)[1] for a in args if a.startswith("-working-directory=")),
               os.getcwd())
    found: dict[str, list[str]] = {"-iquote": [], "-I": [], "-isystem": [], "-idirafter": []}
    pending = ""
    for a in args:
        flag, value = pending, a
        pending = ""
        if not flag:
            if a in found:
                pending = a
                continue
            flag = next((f for f in found if a.startswith(f) and len(a) > len(f)), "")
            if not flag:
                continue
            value = a[len(flag):]
        found[flag].append(os.path.normpath(os.path.join(cwd, value)))
    return (tuple(found["-iquote"]),
            tuple(found["-I"] + found["-isystem"] + found["-idirafter"]))


# Quotes, backslashes, or whitespace that shlex does not split on.
_NOT_PLAIN = re.compile(r"['\"\\]|[^\S \t\r\n]")
_ODD_SPACE = re.compile(r"[^\S \t\r\n]")  # whitespace str.split splits on, shlex not
_QUOTING = re.compile(r"['\"\\]")


def split_command(command: str) -> list[str]:
    """shlex.split, or [] for an unbalanced command. Without quotes and
    backslashes (most of QEMU's commands) that is a whitespace split, ~50x
    faster: a cached run of migration/ spent ~40 ms in shlex for the flags
    digests. The target-specific commands quote whole words
    ('-DCONFIG_TARGET="x86_64-softmmu-config-target.h"'): a word that is one
    single-quoted string is its content, as for shlex; anything else quoted
    goes to shlex."""
    if _NOT_PLAIN.search(command) is None:
        return command.split()
    if _ODD_SPACE.search(command) is None:
        out: list[str] = []
        for word in command.split():
            if _QUOTING.search(word) is None:
                out.append(word)
            elif len(word) >= 2 and word[0] == word[-1] == "'" and "'" not in word[1:-1]:
                out.append(word[1:-1])
            else:
                break
        else:
            return out
    try:
        return shlex.split(command)
    except ValueError:
        return []


_DROP_WITH_VALUE = {"-o", "-MF", "-MQ", "-MT"}
_DROP = {"-c", "-MD", "-MMD", "-MP", "-pipe"}


# compile_commands.json files read in this process, by path, with the stat
# they had: a scan plans the flags of every version of the series from the same
# database (QEMU's has ~3,000 entries, ~50 ms to read), and its entries keep
# their split commands.
_DB_MEMO: dict[str, tuple[tuple[int, int, int], dict[str, CompileEntry]]] = {}


def read_compile_db(build_dir: str) -> dict[str, CompileEntry]:
    path = os.path.join(build_dir, "compile_commands.json")
    try:
        st = os.stat(path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        got = _DB_MEMO.get(path)
        if got is not None and got[0] == stamp:
            return got[1]
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise UserError(
            f"{path}: not found (run QEMU's configure in that build directory, "
            "or drop --build-dir to use no-build mode)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable compile database ({exc}); regenerate it") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: not a JSON list of compile commands; regenerate it")
    entries: dict[str, CompileEntry] = {}
    for item in data:
        if not isinstance(item, dict) or "file" not in item:
            continue
        directory = str(item.get("directory", build_dir))
        src = os.path.normpath(os.path.join(directory, str(item["file"])))
        entries.setdefault(src, CompileEntry(src, directory, item))
    _DB_MEMO[path] = (stamp, entries)
    return entries


def _clean_args(argv: list[str], src: str, directory: str) -> list[str]:
    out: list[str] = []
    it = iter(argv[1:])  # argv[0] is the compiler; it is never run
    for a in it:
        if a in _DROP_WITH_VALUE:
            next(it, None)
            continue
        if a in _DROP:
            continue
        if os.path.normpath(os.path.join(directory, a)) == src:
            continue
        out.append(a)
    # QEMU is built with gcc: its warning flags are unknown to clang.
    out.append("-Wno-unknown-warning-option")
    return out


def synth_include_dir(cache_root: str | None = None) -> str:
    """A directory with the synthesised config-host.h and an empty config-poison.h."""
    base = cache_root or tempfile.gettempdir()
    digest = hashlib.sha256(_CONFIG_HOST.encode()).hexdigest()[:12]
    d = os.path.join(base, f"reviewer-nobuild-{digest}")
    if not os.path.isfile(os.path.join(d, "config-host.h")):
        os.makedirs(d, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=d)
        for name, text in (("config-host.h", _CONFIG_HOST), ("config-poison.h", "")):
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(os.path.join(tmp, name), os.path.join(d, name))
        os.rmdir(tmp)
    return d


def nobuild_args(
    root: str, synth_dir: str, generated_dir: str | None = None
) -> tuple[list[str], list[str]]:
    """Flags for a plain QEMU checkout (no build directory), and notes for the user.

    generated_dir holds the stand-ins for the build's generated headers
    (reviewer/extract/synth.py); it is searched where QEMU's build directory
    would be, after the tree's own directories for quoted includes.
    """
    notes: list[str] = []
    # -O2 as in QEMU's build: __OPTIMIZE__ selects the same macro expansions
    # (qemu_build_not_reached, fortified libc calls) as build mode.
    args = ["-std=gnu11", "-O2", "-D_GNU_SOURCE", "-w", "-ferror-limit=0"]
    # The coroutine markers, defined as osdep.h defines them under clang, so they
    # survive a TU whose osdep.h include chain is broken (osdep.h redefines them
    # identically when it is found).
    for marker in ("coroutine_fn", "coroutine_mixed_fn", "no_coroutine_fn"):
        args.append(f"-D{marker}=__attribute__((annotate(\"{marker}\")))")
    args += ["-I", synth_dir]
    if generated_dir:
        args += ["-I", generated_dir]
    for sub in ("include", "", "host/include/x86_64", "host/include/generic", "linux-headers"):
        d = os.path.join(root, sub)
        if os.path.isdir(d):
            args += ["-iquote" if sub == "" else "-I", d]
    glib = glib_cflags()
    if glib:
        args += glib
    else:
        notes.append(
            "glib headers not found (pkg-config glib-2.0): g_autoptr guards "
            "(WITH_BQL_*, *_LOCK_GUARD) will be missing; install libglib2.0-dev"
        )
    return args, notes


def plan_flags(
    root: str,
    build_dir: str | None,
    resource_dir: str | None = None,
    cache_root: str | None = None,
    source_root: str | None = None,
) -> FlagPlan:
    resource = find_resource_dir(resource_dir)
    root = os.path.normpath(os.path.abspath(root))
    if build_dir is None:
        cand = os.path.join(root, "build")
        if os.path.isfile(os.path.join(cand, "compile_commands.json")):
            build_dir = cand
    synth = synth_include_dir(cache_root)
    if build_dir is not None:
        # Build mode reads the build's own generated headers; the few TUs
        # without a compile entry keep the plain no-build flags.
        nb, notes = nobuild_args(root, synth)
        entries = read_compile_db(os.path.abspath(build_dir))
        if not entries:
            raise UserError(
                f"{build_dir}/compile_commands.json has no entries; regenerate it "
                "or drop --build-dir"
            )
        src = os.path.normpath(os.path.abspath(source_root)) if source_root else ""
        return FlagPlan(root, "build", resource, entries, nb, notes,
                        source_root=src if src != root else "")
    replaced: dict[str, bytes | None] = {}
    generated, problems = generated_include_dir(root, cache_root, replaced)
    nb, notes = nobuild_args(root, synth, generated)
    notes += [f"generated-header stand-ins: {p}; its declarations are missing" for p in problems]
    return FlagPlan(root, "nobuild", resource, {}, nb, notes, replaced=replaced)
