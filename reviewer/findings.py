"""Findings: immutable, fingerprinted without line numbers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Related:
    file: str
    line: int
    message: str


@dataclass(frozen=True)
class Finding:
    rule: str  # QMnnn
    name: str  # kebab-case name of the rule
    severity: str  # error | warning | note
    function: str
    file: str
    line: int
    message: str
    fix: str = ""
    chain: tuple[str, ...] = ()  # witness call chain, entry point first
    contexts: tuple[str, ...] = ()  # e.g. "thread mig/dst/main (BQL not held)"
    related: tuple[Related, ...] = ()
    symbols: tuple[str, ...] = field(default=())  # what the finding is about, for matching

    @property
    def fingerprint(self) -> str:
        """Stable across line moves: rule, function and the symbols involved."""
        raw = "\0".join([self.rule, self.function, *self.symbols])
        return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:20]

    def sort_key(self) -> tuple[str, int, str]:
        return (self.file, self.line, self.rule)
