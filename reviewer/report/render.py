"""Jinja2 environment for every text a person reads (templates/)."""

from __future__ import annotations

from typing import Any

import jinja2

from reviewer.resources import templates_dir


def environment(html: bool = False) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **context: Any) -> str:
    return environment(html=name.endswith(".html.j2")).get_template(name).render(**context)
