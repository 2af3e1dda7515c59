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
lists the files it was built from with their hashes, checked against the
run's hashes of the same paths (a scan rewrites its scratch tree, so the
modification times clang itself would compare change while the contents do
not; clang's own check is turned off with -fno-validate-pch). A PCH that
holds a file in scope, or one the run overrides with unsaved content, is not
used; a TU that cannot be parsed with one is parsed again without.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

PREFIX = "qemu/osdep.h"
# Below this many TUs to parse under one flag set, precompiling costs more than
# it saves (building the PCH is about half a TU's parse); a PCH already stored
# is used for any number.
MIN_GROUP = 3
PCH_ARGS = ("-Xclang", "-fno-validate-pch")
_LAYOUT = "pch-v1"

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
        tmp = f"{manifest}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, manifest)
        if old and old != os.path.basename(built):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.dir, old))
        return Pch(built, tuple(inputs))


def usable(pch: Pch, root: str, in_scope: Callable[[str], bool],
           unsaved: dict[str, bytes] | None) -> bool:
    """A PCH whose files are all out of scope and none overridden."""
    for p in pch.inputs:
        if unsaved and p in unsaved:
            return False
        if (p + os.sep).startswith(root + os.sep) and in_scope(os.path.relpath(p, root)):
            return False
    return True
