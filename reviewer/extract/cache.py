"""Per-TU fact cache.

An entry is keyed by the extractor version, the TU's path, its content and its
flags; it records the content hash of every header the TU included and is valid
only while all of them still hash the same. Entries carry a checksum of their
payload: a truncated or tampered entry is detected, removed and rebuilt, never
trusted. Writes are atomic (temp file + rename), and a cache that cannot be
written only costs speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from reviewer.extract.facts import EXTRACTOR_VERSION, SCHEMA_VERSION, TUFacts


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "qemu-reviewer")


class ContentHashes:
    """Memoised content hashes (by path, size and mtime; or given contents)."""

    def __init__(self, overrides: dict[str, bytes] | None = None) -> None:
        self._memo: dict[str, str] = {}
        self._overrides = overrides or {}

    def __call__(self, path: str) -> str:
        if path in self._overrides:
            return hashlib.sha256(self._overrides[path]).hexdigest()
        try:
            st = os.stat(path)
        except OSError:
            return "missing"
        key = f"{path}\0{st.st_size}\0{st.st_mtime_ns}"
        h = self._memo.get(key)
        if h is None:
            try:
                with open(path, "rb") as fh:
                    h = hashlib.sha256(fh.read()).hexdigest()
            except OSError:
                h = "missing"
            self._memo[key] = h
        return h


class FactCache:
    def __init__(self, directory: str | None, enabled: bool = True) -> None:
        self.dir = os.path.join(directory or default_cache_dir(), f"facts-v{SCHEMA_VERSION}")
        self.enabled = enabled
        self.warning = ""
        self.rejected = 0  # corrupted entries found and dropped

    def key(self, rel: str, content_hash: str, flags_digest: str, scope: tuple[str, ...]) -> str:
        raw = "\0".join([EXTRACTOR_VERSION, rel, content_hash, flags_digest, *scope])
        return hashlib.sha256(raw.encode()).hexdigest()

    def _path(self, key: str) -> str:
        return os.path.join(self.dir, key[:2], key + ".json")

    def get(self, key: str, hashes: Callable[[str], str]) -> TUFacts | None:
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
            checksum, _, text = raw.partition(b"\n")
            if hashlib.sha256(text).hexdigest().encode() != checksum:
                raise ValueError("checksum mismatch")
            payload = json.loads(text)
            for inc, h in payload["includes"].items():
                if hashes(inc) != h:
                    return None  # a header changed: stale, not corrupt
            return TUFacts.from_json(payload["facts"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            self.rejected += 1
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None

    def put(self, key: str, facts: TUFacts, includes: dict[str, str]) -> None:
        if not self.enabled or facts.failed:
            return
        payload: dict[str, Any] = {"includes": includes, "facts": facts.to_json()}
        text = json.dumps(payload, separators=(",", ":")).encode()
        entry = hashlib.sha256(text).hexdigest().encode() + b"\n" + text
        path = self._path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(entry)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            self.warning = f"cache not written ({exc.strerror or exc}); results are unaffected"

