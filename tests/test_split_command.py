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


@given(st.lists(st.one_of(
    st.text(st.sampled_from(list("ab-=/.I_\"\\ ")), max_size=8).map(lambda w: f"'{w}'"),
    st.text(st.sampled_from(list("ab-=/.I_'\"\\")), max_size=8)), max_size=6))
def test_single_quoted_words_same_as_shlex(words: list[str]) -> None:
    command = " ".join(words)
    try:
        expected = shlex.split(command)
    except ValueError:
        expected = []
    assert split_command(command) == expected


def test_quoted_qemu_command() -> None:
    cmd = ("cc -Iqemu-system-x86_64.p '-DCONFIG_TARGET=\"x86_64-softmmu-config-target.h\"' "
           "'-DCONFIG_DEVICES=\"x86_64-softmmu-config-devices.h\"' -c ../hw/i386/pc.c")
    assert split_command(cmd) == shlex.split(cmd)


def test_plain_command() -> None:
    cmd = "cc -Imigration -I../include -DFOO=1 -c ../migration/ram.c -o ram.o"
    assert split_command(cmd) == shlex.split(cmd)
