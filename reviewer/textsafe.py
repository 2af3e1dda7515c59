"""Patch text made inert for a terminal (no jinja2 import: used on every error line)."""

from __future__ import annotations

import re

# Terminal control: C0 controls but tab and newline, DEL, C1 controls (0x9b is
# a one-byte CSI). An ESC is removed with the sequence it starts.
_CONTROL = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def inert(text: str) -> str:
    """Text from a patch (subjects, names, file names, source lines) with
    terminal escape sequences and other control characters removed."""
    text = _CONTROL.sub("", text)
    if not text.isascii():  # a non-UTF-8 file name (surrogate escapes) prints as U+FFFD
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "replace")
        text = data.decode("utf-8", "replace")
    return text
