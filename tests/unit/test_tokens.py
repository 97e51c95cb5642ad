"""core.tokens: a token verifies only for its purpose, unaltered, before its expiry."""

from __future__ import annotations

from postroom.core import tokens

ROOT = b"r" * 32


def test_a_token_reads_back_its_payload_until_it_expires() -> None:
    token = tokens.make(ROOT, "opt-in", "1|ctc_x|https://example.test/a?b=c", expires_at=1000)
    assert tokens.read(ROOT, "opt-in", token, now=999) == "1|ctc_x|https://example.test/a?b=c"
    assert tokens.read(ROOT, "opt-in", token, now=1000) is None


def test_forged_altered_foreign_and_malformed_tokens_are_refused() -> None:
    token = tokens.make(ROOT, "opt-in", "payload", expires_at=10**10)
    payload, expiry, mac = token.split(".")
    assert tokens.read(ROOT, "unsubscribe", token, now=0) is None
    assert tokens.read(b"s" * 32, "opt-in", token, now=0) is None
    assert tokens.read(ROOT, "opt-in", f"{payload}A.{expiry}.{mac}", now=0) is None
    assert tokens.read(ROOT, "opt-in", f"{payload}.{int(expiry, 16) + 1:x}.{mac}", now=0) is None
    assert tokens.read(ROOT, "opt-in", f"{payload}.{expiry}.{'0' * len(mac)}", now=0) is None
    for junk in ("", "a.b", "a.b.c.d", "x" * 5000, f"{payload}.zz.{mac}"):
        assert tokens.read(ROOT, "opt-in", junk, now=0) is None
