"""The fact cache: round trip, stale headers, and entries that must not be trusted."""

from __future__ import annotations

import hashlib
import os
import pickle

from reviewer.extract.cache import ContentHashes, FactCache
from reviewer.extract.facts import Call, Function, Node, Param, TUFacts


def _facts() -> TUFacts:
    body = (Node("call", 3, call=0), Node("if", 4, text="x", branches=((), (Node("return", 5),))))
    return TUFacts(
        file="migration/a.c",
        mode="nobuild",
        functions=(Function("f", "migration/a.c", 2, True, False, ("coroutine_fn",),
                            (Param("x", "int"),), body, 6),),
        calls=(Call("f", "bql_lock_impl", "direct", "migration/a.c", 3, 5, args=(),
                    values=(None, "true"), macro="bql_lock", fn_args=((0, "g"),)),),
    )


def _setup(tmp_path: object) -> tuple[FactCache, str, str, ContentHashes]:
    d = str(tmp_path)
    header = os.path.join(d, "a.h")
    with open(header, "w") as fh:
        fh.write("int x;\n")
    cache = FactCache(os.path.join(d, "cache"))
    hashes = ContentHashes()
    key = cache.key("migration/a.c", "c0ffee", "flags", ())
    cache.put(key, _facts(), {header: hashes(header)})
    return cache, key, header, hashes


def _entry(cache: FactCache) -> str:
    (entry,) = [os.path.join(d, f) for d, _, fs in os.walk(cache.dir) for f in fs]
    return entry


def test_round_trip_is_exact(tmp_path: object) -> None:
    cache, key, _, hashes = _setup(tmp_path)
    assert cache.get(key, hashes) == _facts()
    assert cache.rejected == 0


def test_changed_header_is_stale_not_corrupt(tmp_path: object) -> None:
    cache, key, header, _ = _setup(tmp_path)
    with open(header, "a") as fh:
        fh.write("int y;\n")
    assert cache.get(key, ContentHashes()) is None
    assert cache.rejected == 0


def test_truncated_entry_is_dropped(tmp_path: object) -> None:
    cache, key, _, hashes = _setup(tmp_path)
    entry = _entry(cache)
    with open(entry, "r+b") as fh:
        fh.truncate(os.path.getsize(entry) // 2)
    assert cache.get(key, hashes) is None
    assert cache.rejected == 1
    assert not os.path.exists(entry)


def test_entry_naming_other_classes_is_never_loaded(tmp_path: object) -> None:
    # A well-formed checksum does not make an entry trusted: the unpickler only
    # knows the fact classes, so this payload is rejected, not run.
    cache, key, _, hashes = _setup(tmp_path)
    entry = _entry(cache)
    data = pickle.dumps(({}, os.system), protocol=pickle.HIGHEST_PROTOCOL)
    with open(entry, "wb") as fh:
        fh.write(hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
    assert cache.get(key, hashes) is None
    assert cache.rejected == 1
