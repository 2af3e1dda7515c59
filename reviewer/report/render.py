"""Jinja2 environment for every text a person reads (templates/)."""

from __future__ import annotations

import textwrap
from typing import Any

import jinja2

from reviewer.resources import templates_dir


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


def environment(html: bool = False) -> jinja2.Environment:
    env = jinja2.Environment(
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
    return environment(html=name.endswith(".html.j2")).get_template(name).render(**context)
