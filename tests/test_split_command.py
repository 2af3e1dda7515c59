"""split_command's fast path agrees with shlex.split."""

from __future__ import annotations

import shlex

from hypothesis import given
from hypothesis import strategies as st

from reviewer.extract.flags import split_command

_ALPHABET = st.sampled_from(list("ab-=/.I_ \t\r\n\x0b\x0c\x1c\x85\xa0'\"\\#$"))


@given(st.text(_ALPHABET, max_size=40))
def test_same_as_shlex(command: str) -> None:
    try:
        expected = shlex.split(command)
    except ValueError:
        expected = []
    assert split_command(command) == expected


def test_plain_command() -> None:
    cmd = "cc -Imigration -I../include -DFOO=1 -c ../migration/ram.c -o ram.o"
    assert split_command(cmd) == shlex.split(cmd)
