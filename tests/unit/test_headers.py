"""What a header value may contain, and how headers are folded (postroom.core.headers)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.core.headers import MAX_LINE, fold, header_line_problem, unsafe_character

CONTROLS = [chr(c) for c in [*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]]


@pytest.mark.parametrize("control", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_every_control_but_tab_is_unsafe(control: str) -> None:
    assert unsafe_character(f"a{control}b") == f"U+{ord(control):04X}"


@pytest.mark.parametrize("value", ["plain", "tab\there", "Grüße 你好", "", "emoji 📬"])
def test_printable_text_and_tab_are_safe(value: str) -> None:
    assert unsafe_character(value) is None


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(name=st.sampled_from(["Subject", "X-A", "List-Unsubscribe"]), value=st.text(alphabet="ab \t", max_size=600))
def test_folding_keeps_the_value_and_breaks_only_at_whitespace(name: str, value: str) -> None:
    folded = fold(name, value)
    assert folded is not None
    assert folded.replace("\r\n", "") == f"{name}: {value}"  # unfolding gives back exactly the header
    lines = folded.split("\r\n")
    assert all(line.strip() for line in lines[1:]), "no continuation line is only whitespace"
    assert all(len(line) <= 78 or " " not in line.strip() and "\t" not in line.strip() for line in lines[1:])


def test_a_value_without_whitespace_that_cannot_fit_a_line_is_refused() -> None:
    assert fold("X-A", "a" * (MAX_LINE - len("X-A: "))) is not None
    assert fold("X-A", "a" * (MAX_LINE - len("X-A: ") + 1)) is None
    assert header_line_problem("X-A", "a" * 998) is not None
    assert header_line_problem("X-" + "n" * 80, "v") is not None
    assert header_line_problem("X-A", "word " * 199) is None
