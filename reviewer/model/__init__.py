"""The API model: what QEMU's functions mean (data in api.toml, extendable)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from reviewer.errors import UserError


@dataclass(frozen=True)
class Guard:
    kind: str
    macro: str
    arg: int  # index of the BQL-state argument, -1 if none
    release: str


@dataclass(frozen=True)
class Entry:
    context: str
    fn: tuple[int, ...]
    name: int  # index of the thread-name argument, -1 if none


@dataclass(frozen=True)
class ContextKind:
    bql: str  # "held" | "not_held" | "inherited"
    functions: frozenset[str]
    prefixes: tuple[str, ...]


@dataclass(frozen=True)
class Assume:
    """A protocol fact: `condition` is `value` in `callee` when called from `caller`."""

    caller: str
    callee: str
    condition: str
    value: bool
    why: str


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        elif isinstance(v, list) and isinstance(out.get(k), list):
            if all(isinstance(x, str) for x in [*out[k], *v]):
                out[k] = list(dict.fromkeys([*out[k], *v]))  # names: once each
            else:
                out[k] = [*out[k], *v]  # tables ([[assume]]): all of them
        else:
            out[k] = v
    return out


def _names(d: dict[str, Any], *path: str) -> frozenset[str]:
    cur: Any = d
    for p in path:
        cur = cur.get(p, {}) if isinstance(cur, dict) else {}
    return frozenset(cur) if isinstance(cur, list) else frozenset()


class ApiModel:
    """Read-only view of api.toml (plus project extensions)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.bql_lock = _names(data, "bql", "lock")
        self.bql_unlock = _names(data, "bql", "unlock")
        self.bql_locked = _names(data, "bql", "locked")
        self.bql_cond_wait = _names(data, "bql", "cond_wait")
        self.state_params = _names(data, "bql", "state_params")
        self.guards = {
            name: Guard(
                kind=str(g["kind"]),
                macro=str(g.get("macro", "")),
                arg=int(g.get("arg", -1)),
                release=str(g.get("release", "")),
            )
            for name, g in data.get("guards", {}).items()
        }
        self.guard_releases = frozenset(g.release for g in self.guards.values() if g.release)
        self.assert_macros = _names(data, "assert", "macros")
        self.assert_internals = _names(data, "assert", "internals")
        co = data.get("coroutine", {})
        self.coroutine = {
            cat: frozenset(v) for cat, v in co.items() if isinstance(v, list) and cat != "prefixes"
        }
        self.coroutine_prefixes = tuple(co.get("prefixes", ()))
        self.entries = {
            name: Entry(
                context=str(e["context"]),
                fn=tuple(int(i) for i in e.get("fn", ())),
                name=int(e.get("name", -1)),
            )
            for name, e in data.get("entries", {}).items()
        }
        self.contexts = {
            name: ContextKind(
                bql=str(c.get("bql", "inherited")),
                functions=frozenset(c.get("functions", ())),
                prefixes=tuple(c.get("prefixes", ())),
            )
            for name, c in data.get("contexts", {}).items()
        }
        self.blocking = _names(data, "blocking", "calls")
        self.join = _names(data, "blocking", "join")
        self.requires_bql = _names(data, "requires_bql", "calls")
        self.requires_bql_prefixes = tuple(data.get("requires_bql", {}).get("prefixes", ()))
        self.startup_only = _names(data, "requires_bql", "startup_only")
        self.rcu_register = _names(data, "rcu", "register")
        self.rcu_unregister = _names(data, "rcu", "unregister")
        self.rcu_read_lock = _names(data, "rcu", "read_lock")
        self.rcu_read_unlock = _names(data, "rcu", "read_unlock")
        self.rcu_synchronize = _names(data, "rcu", "synchronize")
        self.noreturn = _names(data, "noreturn", "calls")
        self.exit = _names(data, "exit", "calls")
        self.opaque_safe = _names(data, "audit", "opaque_safe")
        self.assumptions: dict[tuple[str, str], tuple[Assume, ...]] = {}
        for a in data.get("assume", ()):
            got = Assume(str(a["caller"]), str(a["callee"]), str(a["condition"]).strip(),
                         bool(a["value"]), " ".join(str(a.get("why", "")).split()))
            key = (got.caller, got.callee)
            # A later entry (an extra --model file) replaces one about the same condition.
            kept = tuple(x for x in self.assumptions.get(key, ()) if x.condition != got.condition)
            self.assumptions[key] = (*kept, got)
        self.trace_prefix = str(data.get("trace", {}).get("prefix", "trace_"))
        self.trace_not_events = _names(data, "trace", "not_events")

    def coroutine_category(self, callee: str) -> str:
        for cat, names in self.coroutine.items():
            if callee in names:
                return str(cat)
        if callee.startswith(self.coroutine_prefixes):
            return "other"
        return ""

    def is_trace(self, callee: str) -> bool:
        return callee.startswith(self.trace_prefix) and callee not in self.trace_not_events

    def bql_op(self, callee: str) -> str:
        if callee in self.bql_lock:
            return "lock"
        if callee in self.bql_unlock:
            return "unlock"
        if callee in self.bql_cond_wait:
            return "cond_wait"
        return ""


def load_model(extra_path: str | None = None) -> ApiModel:
    text = resources.files("reviewer.model").joinpath("api.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    if extra_path:
        try:
            with open(extra_path, "rb") as fh:
                data = _merge(data, tomllib.load(fh))
        except OSError as exc:
            raise UserError(f"{extra_path}: cannot read the model file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{extra_path}: not valid TOML ({exc})") from None
    try:
        return ApiModel(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{extra_path or 'api.toml'}: an entry is missing a key or has the "
                        f"wrong type ({exc!r}); see docs/architecture.md") from None
