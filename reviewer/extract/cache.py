"""Per-TU fact cache.

An entry is keyed by the extractor version, the TU's path, its content and its
flags; it records the content hash of every header the TU included and is valid
only while all of them still hash the same. Entries carry a checksum of their
payload: a truncated or tampered entry is detected, removed and rebuilt, never
trusted. Writes are atomic (temp file + rename), and a cache that cannot be
written only costs speed.

The payload is a pickle of (includes, TUFacts), read back by an unpickler that
only knows the fact classes: a fully cached run is mostly decoding, and pickle
rebuilds the frozen dataclasses in C (about 5x faster than json.loads followed by
TUFacts.from_json on migration/). Pickle is an internal format here, never an
exchange format: the versions in the key and the checksum guard it, and nothing
but the fact classes can be named in it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import io
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator

from reviewer.extract import facts as facts_module
from reviewer.extract.facts import EXTRACTOR_VERSION, SCHEMA_VERSION, TUFacts

# The classes an entry may name; anything else is a corrupt (or hostile) entry.
_ALLOWED = frozenset({
    "TUFacts", "Function", "Param", "Node", "Call", "FieldStore", "ObjectRef", "Diagnostic",
})
# A pickle restores an object's fields as they were written: an entry written
# before a field was added or renamed would come back without it. The field
# names of every fact class are part of the key, so such entries are never found.
_LAYOUT = ";".join(
    f"{name}:{','.join(f.name for f in dataclasses.fields(getattr(facts_module, name)))}"
    for name in sorted(_ALLOWED)
)


def write_atomic(path: str, data: bytes) -> None:
    """Write a file through a temporary one and a rename: readers see the old
    content or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "qemu-reviewer")


class ContentHashes:
    """Content hashes of files (or of given contents), memoised for one run,
    or for the runs of one scan, which says what changed between them.

    A run asks for the same ~700 headers once per TU that includes them (18,000
    questions over migration/); each path is read and hashed at most once per
    run, and asked again only from the memo, without another stat.
    """

    def __init__(self, overrides: dict[str, bytes] | None = None) -> None:
        self._memo: dict[str, str] = {}
        self._overrides = overrides or {}

    def forget(self, paths: Iterable[str]) -> None:
        """These files changed since they were hashed (a scan moved its
        scratch tree to the next version)."""
        for p in paths:
            self._memo.pop(p, None)

    def __call__(self, path: str) -> str:
        h = self._memo.get(path)
        if h is None:
            h = self._hash(path)
            self._memo[path] = h
        return h

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def _hash(self, path: str) -> str:
        if path in self._overrides:
            return self.digest(self._overrides[path])
        try:
            with open(path, "rb") as fh:
                return hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            return "missing"


class _FactsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if module == facts_module.__name__ and name in _ALLOWED:
            cls: type = getattr(facts_module, name)
            return cls
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a cache entry")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    Decoding cached facts allocates ~100,000 objects; the collector's passes over
    them, which can never find a cycle, cost as much as the decoding itself.
    Reference counting still frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


MAX_VARIANTS = 8
# What reading a corrupt (truncated, tampered, foreign) entry can raise.
_BAD = (OSError, ValueError, KeyError, TypeError, EOFError, AttributeError, IndexError,
        pickle.UnpicklingError)


# Entries already in memory, by key: (includes with their hashes, facts). A scan
# shares one between the runs over its versions, which would otherwise read and
# decode the same unchanged TUs' entries once per version; each run leaves in
# it what it used (FactCache.keep_used).
Memo = dict[str, list[tuple[dict[str, str], TUFacts]]]


class FactCache:
    def __init__(self, directory: str | None, enabled: bool = True,
                 memo: Memo | None = None) -> None:
        self.dir = os.path.join(directory or default_cache_dir(), f"facts-v{SCHEMA_VERSION}")
        self.enabled = enabled
        self.warning = ""
        self.rejected = 0  # corrupted entries found and dropped
        self.memo = memo
        self._used: dict[str, tuple[dict[str, str], TUFacts]] = {}

    def _remember(self, key: str, includes: dict[str, str], facts: TUFacts) -> None:
        if self.memo is not None:
            self._used[key] = (includes, facts)

    def keep_used(self) -> None:
        """Leave in the memo only the entries this run used or made: the next
        version of a scan needs those, and holding every version's facts would
        only grow the process that forks the parse children."""
        if self.memo is not None:
            self.memo.clear()
            self.memo.update((k, [v]) for k, v in self._used.items())

    def key(self, rel: str, content_hash: str, flags_digest: str, scope: tuple[str, ...]) -> str:
        raw = "\0".join([EXTRACTOR_VERSION, _LAYOUT, rel, content_hash, flags_digest, *scope])
        return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()

    def _dir(self, key: str) -> str:
        return os.path.join(self.dir, key[:2], key)

    def _variants(self, key: str) -> Iterator[str]:
        """The entry files of a key, newest first."""
        d = self._dir(key)
        try:
            names = sorted(os.listdir(d), reverse=True)
        except OSError:
            return
        for name in names:
            if name.endswith(".pickle"):
                yield os.path.join(d, name)

    @staticmethod
    def _open(path: str) -> tuple[dict[str, str], bytes]:
        """An entry's includes (path -> content hash) and its undecoded facts;
        ValueError (or another of _BAD) for a corrupt one. Two pickles, the
        first length-prefixed: the includes are checked before the (much
        larger) facts are decoded."""
        with open(path, "rb") as fh:
            raw = fh.read()
        checksum, _, data = raw.partition(b"\n")
        if hashlib.sha256(data).hexdigest().encode() != checksum:
            raise ValueError("checksum mismatch")
        n = int.from_bytes(data[:8], "little")
        with gc_paused():
            includes = _FactsUnpickler(io.BytesIO(data[8:8 + n])).load()
        if not isinstance(includes, dict):
            raise ValueError("not a cache entry")
        return includes, data[8 + n:]

    @staticmethod
    def _decode(payload: bytes) -> TUFacts:
        with gc_paused():
            facts = _FactsUnpickler(io.BytesIO(payload)).load()
        if not isinstance(facts, TUFacts):
            raise ValueError("not a cache entry")
        if facts.schema != SCHEMA_VERSION:
            raise ValueError(f"facts schema {facts.schema} != {SCHEMA_VERSION}")
        return facts

    def get(self, key: str, hashes: Callable[[str], str],
            stale: Callable[[dict[str, str], TUFacts], bool] | None = None) -> TUFacts | None:
        """The entry for `key` whose included headers all still hash the same.

        One key (a TU's content and flags) can have several variants, one per
        set of header contents: scanning a series switches headers back and
        forth, and a single slot per key would make every version evict the
        other's entry. A corrupt entry is counted, removed and skipped.
        stale(includes, facts): what the caller knows makes an entry invalid
        although its files hash the same (a file added where an #include
        looks first)."""
        if not self.enabled:
            return None
        for includes, facts in (self.memo or {}).get(key, ()):
            if all(hashes(inc) == h for inc, h in includes.items()):
                if stale is not None and stale(includes, facts):
                    return None
                self._remember(key, includes, facts)
                return facts
        for path in self._variants(key):
            try:
                includes, payload = self._open(path)
                if any(hashes(inc) != h for inc, h in includes.items()):
                    continue  # another version of the headers
                facts = self._decode(payload)
                if stale is not None and stale(includes, facts):
                    return None
                self._remember(key, includes, facts)
                return facts
            except FileNotFoundError:
                continue
            except _BAD:
                self.rejected += 1
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return None

    def get_near(self, key: str, hashes: Callable[[str], str], before: dict[str, str]
                 ) -> tuple[TUFacts, dict[str, str], list[str]] | None:
        """An entry for `key` built from the previous version of the files in
        `before` (path -> content hash then) and the current version of all its
        other headers: its facts, its includes, and which of them changed."""
        if not self.enabled or not before:
            return None
        # From memory first: the same object as the previous version's, which
        # tells a later analysis that this TU's facts did not change.
        for includes, facts in (self.memo or {}).get(key, ()):
            changed = [inc for inc, h in includes.items() if hashes(inc) != h]
            if changed and all(before.get(inc) == includes[inc] for inc in changed):
                return facts, includes, changed
        for path in self._variants(key):
            try:
                includes, payload = self._open(path)
                changed = [inc for inc, h in includes.items() if hashes(inc) != h]
                if not changed or any(before.get(inc) != includes[inc] for inc in changed):
                    continue
                return self._decode(payload), includes, changed
            except _BAD:
                continue  # get() counts and removes it
        return None

    def put(self, key: str, facts: TUFacts, includes: dict[str, str]) -> None:
        if not self.enabled or facts.failed:
            return
        self._remember(key, includes, facts)
        variant = hashlib.sha256(
            "\0".join(f"{k}={v}" for k, v in sorted(includes.items()))
            .encode("utf-8", "surrogateescape")
        ).hexdigest()[:16]
        head = pickle.dumps(includes, protocol=pickle.HIGHEST_PROTOCOL)
        data = len(head).to_bytes(8, "little") + head + pickle.dumps(
            facts, protocol=pickle.HIGHEST_PROTOCOL)
        entry = hashlib.sha256(data).hexdigest().encode() + b"\n" + data
        d = self._dir(key)
        try:
            os.makedirs(d, exist_ok=True)
            # Newest first when listed: a time prefix; keep a handful of variants.
            path = os.path.join(d, f"{time.time_ns():020d}-{variant}.pickle")
            existing = sorted(n for n in os.listdir(d) if n.endswith(".pickle"))
            stale = [n for n in existing if n.endswith(f"-{variant}.pickle")]
            others = [n for n in existing if n not in stale]
            stale += others[: max(0, len(others) - (MAX_VARIANTS - 1))]  # the oldest go
            for old in stale:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(d, old))
            write_atomic(path, entry)
        except OSError as exc:
            self.warning = f"cache not written ({exc.strerror or exc}); results are unaffected"

