"""The rule registry: one module per rule in this package.

Each module exports ID ("QMnnn"), NAME (what the bug is, kebab-case), SEVERITY,
STATUS ("stable" or "preview"), a docstring with the sections What it does /
Why is this bad? / Example / Use instead, and check(ctx) yielding Findings. The
registry fails loudly on a duplicate ID, a missing section, or a rule without
fixtures.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from reviewer.findings import Finding
from reviewer.resources import fixtures_dir

SECTIONS = ("What it does", "Why is this bad?", "Example", "Use instead")
DELETED_IDS: dict[str, str] = {}  # ID -> why it was retired; IDs are never reused


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str
    status: str
    doc: str
    check: Callable[[Any], Iterator[Finding]]
    module: str

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0]

    def section(self, title: str) -> str:
        m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", self.doc, re.S | re.M)
        return m.group(1).strip() if m else ""


class RegistryError(Exception):
    pass


def _load(mod: ModuleType) -> Rule:
    doc = (mod.__doc__ or "").strip()
    for attr in ("ID", "NAME", "SEVERITY", "STATUS", "check"):
        if not hasattr(mod, attr):
            raise RegistryError(f"{mod.__name__}: missing {attr}")
    for sec in SECTIONS:
        if f"## {sec}" not in doc:
            raise RegistryError(f"{mod.__name__}: docstring lacks section '## {sec}'")
    return Rule(mod.ID, mod.NAME, mod.SEVERITY, mod.STATUS, doc, mod.check, mod.__name__)


_RULES: dict[str, Rule] | None = None


def all_rules(check_fixtures: bool = True) -> dict[str, Rule]:
    global _RULES
    if _RULES is None:
        rules: dict[str, Rule] = {}
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if not re.match(r"qm\d{3}_", info.name):
                continue
            rule = _load(importlib.import_module(f"{__name__}.{info.name}"))
            if rule.id in rules:
                raise RegistryError(f"duplicate rule ID {rule.id}")
            if rule.id in DELETED_IDS:
                raise RegistryError(f"{rule.id} was retired: {DELETED_IDS[rule.id]}")
            if check_fixtures:
                d = os.path.join(fixtures_dir(), "rules", rule.id)
                for f in ("bad.c", "good.c"):
                    if not os.path.isfile(os.path.join(d, f)):
                        raise RegistryError(f"{rule.id}: no fixture {d}/{f}")
            rules[rule.id] = rule
        _RULES = rules
    return _RULES


def get_rule(rule_id: str) -> Rule | None:
    rules = all_rules()
    key = rule_id.upper()
    if key in rules:
        return rules[key]
    for r in rules.values():
        if r.name == rule_id:
            return r
    return None


def iter_rules() -> Iterator[Rule]:
    yield from all_rules().values()
