"""Passwords, TOTP, recovery codes, session cookies and CSRF: the pure rules behind dashboard sign-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

import pyotp
import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from postroom.auth import sessions, totp
from postroom.auth.passwords import hash_password, password_problems, verify_password

ROOT = b"k" * 32
NOW = datetime(2026, 11, 23, 12, 0, 10, tzinfo=UTC)


def test_passwords_are_argon2id_with_asvs_parameters_and_verify_exactly() -> None:
    stored = hash_password("Tr0ub4dor & a long tail")
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert (params.time_cost, params.memory_cost, params.parallelism) == (2, 19 * 1024, 1)
    assert verify_password(stored, "Tr0ub4dor & a long tail").ok
    assert not verify_password(stored, "tr0ub4dor & a long tail").ok  # no case folding
    assert not verify_password(stored, "Tr0ub4dor & a long tai").ok  # no truncation
    assert not verify_password("not a hash", "anything").ok


def test_a_hash_made_with_weaker_parameters_asks_to_be_rehashed() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID).hash("pass phrase here")
    checked = verify_password(weak, "pass phrase here")
    assert checked.ok and checked.needs_rehash
    assert not verify_password(hash_password("pass phrase here"), "pass phrase here").needs_rehash


@pytest.mark.parametrize(
    ("password", "complaint"),
    [
        ("short", "at least 8"),
        ("password1", "most common"),
        ("QWERTYUIOP", "most common"),
        ("alice@example.com", "email address"),
        ("x" * 1025, "longer than 1024"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password: str, complaint: str) -> None:
    problems = password_problems(password, email="alice@example.com")
    assert any(complaint in p for p in problems), problems


def test_any_long_enough_password_is_fine_without_composition_rules() -> None:
    assert password_problems("all lower case words", email="a@b.test") == []
    assert password_problems("😀" * 8) == []


def test_totp_accepts_one_step_of_drift_and_never_the_same_step_twice() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32  # 160 bits, base32
    now_step = totp.step_at(NOW)
    code = pyotp.TOTP(secret).at(NOW)
    assert totp.matching_step(secret, code, now=NOW, last_step=None) == now_step
    assert totp.matching_step(secret, code, now=NOW, last_step=now_step) is None  # replay
    assert totp.matching_step(secret, code, now=NOW + timedelta(seconds=30), last_step=None) == now_step
    assert totp.matching_step(secret, code, now=NOW + timedelta(seconds=90), last_step=None) is None  # too old
    earlier = pyotp.TOTP(secret).at(NOW - timedelta(seconds=30))
    assert totp.matching_step(secret, earlier, now=NOW, last_step=now_step) is None  # not later than the last
    assert totp.matching_step(secret, "12345", now=NOW, last_step=None) is None
    assert totp.matching_step(secret, " ".join(code), now=NOW, last_step=None) == now_step


def test_the_qr_code_is_inline_svg_of_an_otpauth_uri() -> None:
    uri = totp.provisioning_uri(totp.new_secret(), "alice@example.com")
    assert uri.startswith("otpauth://totp/Postroom:alice%40example.com?") and "issuer=Postroom" in uri
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg") and "<script" not in svg and "style=" not in svg


def test_recovery_codes_are_80_bits_hashed_and_forgiving_about_dashes_and_case() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(totp.looks_like_recovery_code(code) for code in codes)
    stored = totp.hash_recovery_code(codes[0])
    assert stored.startswith("$argon2id$") and codes[0] not in stored
    assert totp.recovery_code_matches(stored, codes[0].lower().replace("-", " "))
    assert not totp.recovery_code_matches(stored, codes[1])


def test_session_tokens_carry_256_bits_and_are_stored_as_digests() -> None:
    token = sessions.new_token()
    assert len(token) == 43 and token != sessions.new_token()
    assert sessions.token_digest(token) != token and len(sessions.token_digest(token)) == 64


def test_the_session_cookie_is_host_prefixed_and_secure_over_https_only() -> None:
    secure = sessions.session_cookie("t", secure=True)
    assert (secure.name, secure.secure, secure.same_site, secure.max_age) == (
        "__Host-postroom_session",
        True,
        "lax",
        None,
    )
    plain = sessions.session_cookie("t", secure=False)
    assert (plain.name, plain.secure) == ("postroom_session", False)
    assert sessions.cleared_session_cookie(secure=True).max_age == 0
    assert sessions.presession_cookie("n", secure=True).name == "__Host-postroom_presession"


@pytest.mark.parametrize(
    ("scheme", "trusted", "proto", "secure"),
    [
        ("https", False, None, True),
        ("http", False, "https", False),  # anyone can send the header; only a trusted proxy is believed
        ("http", True, "https", True),
        ("http", True, "http, https", True),  # the proxy appends its own value last
        ("http", True, "https, http", False),
        ("http", True, None, False),
    ],
)
def test_https_is_recognised_directly_or_from_a_trusted_proxy(
    scheme: str, trusted: bool, proto: str | None, secure: bool
) -> None:
    assert sessions.is_secure_request(scheme=scheme, peer_is_trusted_proxy=trusted, forwarded_proto=proto) is secure


def test_plain_http_is_only_for_clients_on_this_machine() -> None:
    assert sessions.plain_http_allowed(ip_address("127.0.0.1"))
    assert sessions.plain_http_allowed(ip_address("::1"))
    assert not sessions.plain_http_allowed(ip_address("192.0.2.10"))
    assert not sessions.plain_http_allowed(None)


def test_csrf_tokens_are_bound_to_their_session() -> None:
    token = sessions.csrf_token(ROOT, "session-a")
    assert sessions.csrf_token_valid(ROOT, "session-a", token)
    assert not sessions.csrf_token_valid(ROOT, "session-b", token)
    assert not sessions.csrf_token_valid(b"x" * 32, "session-a", token)
    assert not sessions.csrf_token_valid(ROOT, "session-a", None)
    assert not sessions.csrf_token_valid(ROOT, None, token)


@pytest.mark.parametrize(
    ("method", "origin", "site", "refused"),
    [
        ("POST", "http://dash.test:8025", "same-origin", False),
        ("POST", None, None, False),  # an old browser: the token alone decides
        ("POST", "https://evil.test", None, True),
        ("POST", "null", None, True),
        ("POST", None, "cross-site", True),
        ("POST", None, "same-site", True),
        ("GET", "https://evil.test", "cross-site", False),  # safe methods change nothing
    ],
)
def test_cross_site_posts_are_refused_before_the_token_is_checked(
    method: str, origin: str | None, site: str | None, refused: bool
) -> None:
    reason = sessions.cross_site_refusal(
        method=method, origin=origin, sec_fetch_site=site, expected_origin="http://dash.test:8025"
    )
    assert (reason is not None) is refused
