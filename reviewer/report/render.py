"""Jinja2 environment for every text a person reads (templates/)."""

from __future__ import annotations

import textwrap
from typing import Any

import jinja2
import markupsafe

from reviewer.resources import templates_dir
from reviewer.textsafe import inert


def wrap(text: str, width: int = 72) -> str:
    """Prose at 72 columns (mail); lines indented by 4 spaces stay as they are."""
    out = []
    for para in str(text).split("\n\n"):
        para = para.strip("\n")
        if not para:
            continue
        if para.startswith(("    ", "\t")):
            out.append(para)
        else:
            out.append(textwrap.fill(" ".join(para.split()), width=width,
                                     break_long_words=False, break_on_hyphens=False))
    return "\n\n".join(out)


def inert_value(value: Any) -> Any:
    # Every {{ expression }} of a template passes here: patch text is printed,
    # never interpreted (jinja only evaluates the template's own source).
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return inert(value)
    return value


def _finalize_md(value: Any) -> Any:
    value = inert_value(value)
    # Markdown renders inline HTML: a "<" from patch text never opens a tag.
    return value.replace("<", "&lt;") if isinstance(value, str) else value


def environment(html: bool = False, markdown: bool = False) -> jinja2.Environment:
    env = jinja2.Environment(
        finalize=_finalize_md if markdown else inert_value,
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wrap"] = wrap
    return env


def render(name: str, **context: Any) -> str:
    return environment(html=name.endswith(".html.j2"), markdown=name.endswith(".md.j2")
                       ).get_template(name).render(**context)
