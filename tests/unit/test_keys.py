"""The key format: prefix, length, checksum."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from postroom.auth.keys import BASE62, KEY_PATTERN, generate_key, is_well_formed, key_digest, loggable_prefix


def test_generated_keys_are_unique_and_well_formed() -> None:
    keys = {generate_key() for _ in range(20_000)}
    assert len(keys) == 20_000
    assert all(KEY_PATTERN.fullmatch(k) and is_well_formed(k) and len(k) == 69 for k in keys)


@given(position=st.integers(5, 68), replacement=st.sampled_from(BASE62))
def test_any_single_character_change_breaks_the_checksum(position: int, replacement: str) -> None:
    key = generate_key()
    mutated = key[:position] + replacement + key[position + 1 :]
    assert is_well_formed(mutated) == (mutated == key)


def test_strings_that_are_not_keys_are_refused() -> None:
    key = generate_key()
    for text in (
        "",
        "lttr_",
        key[:-1],
        key + "A",
        "LTTR_" + key[5:],
        key.replace("lttr_", "lttr-"),
        key[:20] + "-" + key[21:],
    ):
        assert not is_well_formed(text)


def test_digest_is_sha256_of_the_whole_key_and_prefix_is_only_for_real_keys() -> None:
    key = generate_key()
    assert key_digest(key) == hashlib.sha256(key.encode()).digest()
    assert loggable_prefix(key) == key[:12]
    assert loggable_prefix("lttr_" + "x" * 64) is None
