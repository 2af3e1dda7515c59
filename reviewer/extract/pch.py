"""Precompiled prefix headers: QEMU's qemu/osdep.h parsed once per flag set.

QEMU's coding style makes every .c file start with #include "qemu/osdep.h",
and that header with what it pulls in (glib, libc, the generated
config-host.h: ~300 files) is about 30% of a migration TU's parse. A run with
several TUs to parse under the same flags precompiles it once (libclang saves
the parsed header) and parses each TU with -include-pch: the facts are the
same (bench/pch_check.py compares them on the real tree), since nothing the
prefix declares is in scope and every TU that uses it begins with exactly that
include.

Whether a stored PCH still fits is decided here, by content: its manifest
lists the files it was built from with the hashes of their contents on disk,
checked against the disk's hashes of the same paths now (a scan rewrites its
scratch tree, so the modification times clang compares change while the
contents do not: -fno-validate-pch turns that comparison off; clang still
refuses an input whose size changed, and the TU is then parsed again
without). A PCH that holds a file in scope, or one the run overrides with
unsaved content, is not used, and one built while the run overrides one of
its files is not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from reviewer.extract.cache import write_atomic

PREFIX = "qemu/osdep.h"
# Below this many TUs to parse under one flag set, precompiling costs more than
# it saves (building the PCH is about half a TU's parse); a PCH already stored
# is used for any number.
MIN_GROUP = 3
PCH_ARGS = ("-Xclang", "-fno-validate-pch")
_LAYOUT = "pch-v2"  # v2: inputs in inclusion order

_SPACE = re.compile(rb"(?:\s+|/\*.*?\*/|//[^\n]*\n)*", re.S)
_INCLUDE = re.compile(rb'#[ \t]*include[ \t]*"' + re.escape(PREFIX.encode()) + rb'"[ \t\r]*'
                      rb"(?:/\*[^\n]*?\*/[ \t\r]*)*(?://[^\n]*)?(?:\n|$)")


def starts_with_prefix(data: bytes) -> bool:
    """Is the file's first token the #include of PREFIX? Anything before it (a
    #define, a #pragma, a declaration) would be seen by the header in the TU
    but not in the PCH."""
    m = _SPACE.match(data)
    return bool(_INCLUDE.match(data, m.end() if m else 0))


@dataclass(frozen=True)
class Pch:
    path: str
    inputs: tuple[str, ...]  # absolute paths of the files the prefix included


def _library_identity() -> str:
    """A PCH is only readable by the libclang that wrote it."""
    import clang.cindex as ci

    name = str(ci.conf.get_filename())
    try:
        st = os.stat(name)
        return f"{name}\0{st.st_size}\0{st.st_mtime_ns}"
    except OSError:
        return name


class PchStore:
    """PCHs by flag set, in the cache directory. Each has a manifest
    `<key>.json` naming its file and the hashes of its inputs; the file is
    written under a new name before the manifest points at it, so a reader
    never sees a manifest with another build's PCH."""

    def __init__(self, directory: str) -> None:
        self.dir = os.path.join(directory, _LAYOUT)
        self._identity = ""

    def key(self, args: list[str]) -> str:
        if not self._identity:
            self._identity = _library_identity()
        raw = "\0".join([self._identity, PREFIX, *args])
        return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def header(self) -> str:
        """The file the PCH is built from: one line, the TUs' first."""
        path = os.path.join(self.dir, "prefix.h")
        if not os.path.exists(path):
            os.makedirs(self.dir, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                fh.write(f'#include "{PREFIX}"\n')
            os.replace(tmp, path)
        return path

    def lookup(self, key: str, hashes: Callable[[str], str]) -> Pch | None:
        try:
            with open(os.path.join(self.dir, key + ".json"), encoding="utf-8") as fh:
                data = json.load(fh)
            path = os.path.join(self.dir, str(data["pch"]))
            inputs: dict[str, str] = data["inputs"]
            if not isinstance(inputs, dict) or not os.path.exists(path):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if any(hashes(p) != h for p, h in inputs.items()):
            return None
        return Pch(path, tuple(inputs))

    def new_path(self, key: str) -> str:
        os.makedirs(self.dir, exist_ok=True)
        return os.path.join(self.dir, f"{key}-{os.getpid()}-{os.urandom(4).hex()}.pch")

    def commit(self, key: str, built: str, inputs: list[str],
               hashes: Callable[[str], str]) -> Pch:
        """Point the manifest at a PCH just built at `built`; the one it
        pointed at before is removed."""
        manifest = os.path.join(self.dir, key + ".json")
        old = ""
        try:
            with open(manifest, encoding="utf-8") as fh:
                old = str(json.load(fh)["pch"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        data = {"pch": os.path.basename(built), "inputs": {p: hashes(p) for p in inputs}}
        write_atomic(manifest, json.dumps(data).encode())
        if old and old != os.path.basename(built):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.dir, old))
        self._sweep()
        return Pch(built, tuple(inputs))

    def _sweep(self) -> None:
        """Remove PCHs no manifest names, left by a run that was killed, once
        they are an hour old (a younger one may be another run's, in flight)."""
        named: set[str] = set()
        try:
            entries = os.listdir(self.dir)
            for name in entries:
                if name.endswith(".json"):
                    with (contextlib.suppress(OSError, ValueError, KeyError, TypeError),
                          open(os.path.join(self.dir, name), encoding="utf-8") as fh):
                        named.add(str(json.load(fh)["pch"]))
        except OSError:
            return
        now = time.time()
        for name in entries:
            path = os.path.join(self.dir, name)
            if name.endswith(".pch") and name not in named:
                with contextlib.suppress(OSError):
                    if now - os.stat(path).st_mtime > 3600:
                        os.unlink(path)


def in_scope(rel: str, scope: tuple[str, ...]) -> bool:
    return any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in scope)


def usable(pch: Pch, root: str, scope: tuple[str, ...],
           unsaved: dict[str, bytes] | None) -> bool:
    """A PCH whose files are all out of scope and none overridden."""
    for p in pch.inputs:
        if unsaved and p in unsaved:
            return False
        if (p + os.sep).startswith(root + os.sep) and in_scope(os.path.relpath(p, root), scope):
            return False
    return True
