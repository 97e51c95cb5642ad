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


def test_sandbox_keys_carry_their_prefix_and_a_checksum_over_it() -> None:
    from postroom.auth.keys import display_prefix, is_sandbox

    key = generate_key(sandbox=True)
    assert key.startswith("lttr_sandbox_") and len(key) == len("lttr_sandbox_") + 64
    assert is_well_formed(key) and is_sandbox(key) and not is_sandbox(generate_key())
    assert display_prefix(key) == key[:20] and display_prefix(generate_key())[:5] == "lttr_"
    assert len(display_prefix(generate_key())) == 12
    assert not is_well_formed("lttr_" + key[len("lttr_sandbox_") :])  # the prefix is part of the checksum
    assert not is_well_formed("lttr_sandbox_" + generate_key()[5:])
    assert loggable_prefix(key) == key[:20]


@given(position=st.integers(13, 76), replacement=st.sampled_from(BASE62))
def test_any_single_character_change_breaks_a_sandbox_keys_checksum(position: int, replacement: str) -> None:
    key = generate_key(sandbox=True)
    mutated = key[:position] + replacement + key[position + 1 :]
    assert is_well_formed(mutated) == (mutated == key)


def test_sandbox_keys_may_read_and_send_and_nothing_else() -> None:
    from postroom.auth.scopes import ROUTE_SCOPES, Scope, sandbox_permits

    allowed = {scope for scope in Scope if sandbox_permits(scope)}
    assert {Scope.EMAILS_SEND, Scope.EMAILS_READ, Scope.DOMAINS_READ, Scope.KEYS_READ} <= allowed
    refused = set(Scope) - allowed
    assert {s for s in Scope if s.value.endswith(":write")} | {Scope.EMAILS_CANCEL} == refused
    for (method, path), scope in ROUTE_SCOPES.items():  # every route that changes something refuses sandbox keys
        if isinstance(scope, Scope) and method != "GET" and path not in ("/api/emails", "/api/emails/scheduled"):
            assert not sandbox_permits(scope), (method, path)
