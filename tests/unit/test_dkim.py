"""DKIM signing: every signature we make must verify with an independent implementation (dkimpy)."""

from __future__ import annotations

import email.policy
import time
from collections.abc import Callable
from email.message import EmailMessage

import dkim
import dkim.crypto
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postroom.core.dkim import DEFAULT_SIGNED_HEADERS, DkimKey, generate_rsa_key, load_private_key, sign

DOMAIN = "example.com"
SELECTOR = "pr202611"

# Key generation takes tens of milliseconds: one key for the whole module.
PEM, TXT = generate_rsa_key()
KEY = DkimKey(domain=DOMAIN, selector=SELECTOR, private_key_pem=PEM)


def dnsfunc_for(txt: str, name: bytes = f"{SELECTOR}._domainkey.{DOMAIN}.".encode()) -> Callable[..., bytes]:
    """dkimpy calls ``dnsfunc(name: bytes, timeout=...)`` and accepts the TXT value as bytes."""

    def lookup(queried: bytes, timeout: int = 5) -> bytes:
        assert queried == name
        return txt.encode()

    return lookup


def verifies(signed: bytes, txt: str = TXT) -> bool:
    return bool(dkim.verify(signed, dnsfunc=dnsfunc_for(txt)))


def build(
    subject: str = "Your receipt",
    text: str = "Hello,\n\nthanks for your order.\n",
    html: str | None = "<p>Hello,</p><p>thanks for your order.</p>",
    **headers: str,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Postroom <noreply@example.com>"
    msg["To"] = "Ann Example <ann@example.org>"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = "<0123456789@example.com>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes(policy=email.policy.SMTP)


def signed(message: bytes) -> bytes:
    return sign(message, KEY) + message


def header_lines(header: bytes) -> list[bytes]:
    assert header.endswith(b"\r\n")
    return header[:-2].split(b"\r\n")


def tags(header: bytes) -> dict[str, str]:
    value = b"".join(header_lines(header)).decode().split(":", 1)[1]
    pairs = (part.split("=", 1) for part in value.split(";") if part.strip())
    return {k.strip(): "".join(v.split()) for k, v in pairs}


def test_a_multipart_text_and_html_message_verifies() -> None:
    assert verifies(signed(build()))


def test_a_unicode_subject_verifies() -> None:
    assert verifies(signed(build(subject="Grüße aus Köln — 你好 🎉 " * 5)))


def test_long_folded_headers_verify() -> None:
    recipients = ", ".join(f"Recipient Number {i} <recipient{i}@example.org>" for i in range(12))
    message = build(
        subject="A subject that is rather long and will certainly need folding by the policy " * 3,
        List_Unsubscribe="<https://example.com/unsubscribe/" + "x" * 150 + ">, <mailto:unsub@example.com>",
        List_Unsubscribe_Post="List-Unsubscribe=One-Click",
        Cc=recipients,
    )
    assert b"\r\n " in message.split(b"\r\n\r\n")[0]  # the headers really are folded
    assert verifies(signed(message))


def test_a_body_with_trailing_blank_lines_and_trailing_whitespace_verifies() -> None:
    text = "line with trailing spaces   \nline with a tab\t\n  indented   twice\n\n\n\n\n"
    assert verifies(signed(build(text=text, html=None)))


def test_an_empty_body_verifies() -> None:
    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: nothing\r\n\r\n"
    assert verifies(signed(message))


def test_a_message_with_lf_line_endings_is_signed_as_it_will_travel() -> None:
    crlf = build()
    lf = crlf.replace(b"\r\n", b"\n")
    assert sign(lf, KEY, timestamp=1) == sign(crlf, KEY, timestamp=1)
    assert verifies(sign(lf, KEY) + crlf)


def test_the_header_has_all_required_tags_and_signs_only_present_headers() -> None:
    header = sign(build(Reply_To="help@example.com"), KEY, timestamp=1_790_000_000)
    found = tags(header)
    assert header.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;")
    assert found["v"] == "1"
    assert found["a"] == "rsa-sha256"
    assert found["c"] == "relaxed/relaxed"
    assert found["d"] == DOMAIN
    assert found["s"] == SELECTOR
    assert found["t"] == "1790000000"
    assert found["h"].split(":") == [
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type", "reply-to"
    ]  # fmt: skip
    assert len(found["bh"]) == 44 and found["b"]


def test_the_header_is_folded_with_crlf_into_short_lines() -> None:
    header = sign(build(), KEY)
    assert b"\n" not in header.replace(b"\r\n", b"")
    lines = header_lines(header)
    assert len(lines) > 3
    assert all(len(line) <= 78 for line in lines)
    assert all(line[:1] == b" " for line in lines[1:])


def test_a_long_h_tag_is_folded_and_still_verifies() -> None:
    message = build(Reply_To="a@example.com", List_Unsubscribe="<mailto:u@example.com>", Cc="c@example.org")
    message = message.replace(b"\r\n\r\n", b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n", 1)
    header = sign(message, KEY)
    assert tags(header)["h"].split(":") == [name.decode() for name in DEFAULT_SIGNED_HEADERS]
    assert all(len(line) <= 78 for line in header_lines(header))
    assert verifies(header + message)


def test_the_timestamp_defaults_to_now() -> None:
    before = int(time.time())
    stamp = int(tags(sign(build(), KEY))["t"])
    assert before <= stamp <= int(time.time())


def test_a_tampered_body_fails_verification() -> None:
    message = signed(build())
    assert verifies(message)
    assert not verifies(message.replace(b"thanks for your order", b"thanks for your money"))


def test_an_appended_body_line_fails_verification() -> None:
    message = signed(build(html=None))
    assert not verifies(message + b"P.S. send money\r\n")


@pytest.mark.parametrize(
    ("original", "forged"),
    [
        (b"Subject: Your receipt", b"Subject: Your invoice"),
        (b"From: Postroom <noreply@example.com>", b"From: Postroom <billing@example.com>"),
        (b"To: Ann Example <ann@example.org>", b"To: Ann Example <eve@example.org>"),
    ],
)
def test_a_tampered_signed_header_fails_verification(original: bytes, forged: bytes) -> None:
    message = signed(build())
    assert original in message
    assert not verifies(message.replace(original, forged))


def test_an_added_second_from_header_fails_verification() -> None:
    message = signed(build())
    assert not verifies(message.replace(b"\r\n\r\n", b"\r\nFrom: mallory@example.net\r\n\r\n", 1))


def test_whitespace_changes_that_relaxed_canonicalisation_allows_still_verify() -> None:
    message = signed(build(html=None))
    refolded = message.replace(b"Subject: Your receipt", b"subject:   Your \r\n\t receipt  ")
    assert refolded != message
    assert verifies(refolded)


def test_unsigned_headers_may_be_added_without_breaking_the_signature() -> None:
    message = signed(build())
    assert verifies(message.replace(b"\r\n\r\n", b"\r\nX-Mailer: relay\r\nReceived: from somewhere\r\n\r\n", 1))


def test_another_key_does_not_verify() -> None:
    _, other_txt = generate_rsa_key()
    assert not verifies(signed(build()), other_txt)


def test_a_message_without_from_is_refused() -> None:
    with pytest.raises(ValueError, match="From"):
        sign(b"To: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n", KEY)


def test_signed_headers_without_from_are_refused() -> None:
    with pytest.raises(ValueError, match="from"):
        sign(build(), KEY, signed_headers=(b"to", b"subject"))


def test_custom_signed_headers_are_lowercased_and_deduplicated() -> None:
    message = build()
    header = sign(message, KEY, signed_headers=(b"From", b"SUBJECT", b"from", b"x-absent"))
    assert tags(header)["h"] == "from:subject"
    assert verifies(header + message)


def test_every_instance_of_a_repeated_header_is_signed() -> None:
    message = build(html=None).replace(b"\r\n\r\n", b"\r\nTo: second@example.org\r\n\r\n", 1)
    header = sign(message, KEY)
    assert tags(header)["h"].startswith("from:to:to:")
    assert verifies(header + message)
    assert not verifies(header + message.replace(b"second@", b"third@"))


def test_a_malformed_header_line_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        sign(b"From: a@example.com\r\nthis is not a header\r\n\r\nbody\r\n", KEY)


def test_domain_and_selector_must_be_ascii_names() -> None:
    with pytest.raises(ValueError, match="domain"):
        DkimKey(domain="exämple.com", selector=SELECTOR, private_key_pem=PEM)
    with pytest.raises(ValueError, match="selector"):
        DkimKey(domain=DOMAIN, selector="bad; selector", private_key_pem=PEM)


def test_generated_key_is_unencrypted_pkcs8_and_txt_record_is_dkim1_rsa() -> None:
    assert PEM.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert TXT.startswith("v=DKIM1; k=rsa; p=MII")
    assert load_private_key(PEM).key_size == 2048


def test_keys_below_1024_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="1024"):
        generate_rsa_key(512)


def test_a_non_rsa_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="RSA"):
        sign(build(), DkimKey(domain=DOMAIN, selector=SELECTOR, private_key_pem=pem))


def test_the_pem_is_parsed_once_for_many_signatures() -> None:
    pem, _ = generate_rsa_key()
    key = DkimKey(domain=DOMAIN, selector=SELECTOR, private_key_pem=pem)
    before = load_private_key.cache_info()
    for _ in range(20):
        sign(build(), key)
    after = load_private_key.cache_info()
    assert after.misses == before.misses + 1
    assert after.hits >= before.hits + 19


def test_signing_never_uses_dkimpys_pure_python_rsa(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("dkimpy's RSA signer was called")

    monkeypatch.setattr(dkim.crypto, "RSASSA_PKCS1_v1_5_sign", forbidden)
    monkeypatch.setattr(dkim, "RSASSA_PKCS1_v1_5_sign", forbidden)  # dkimpy imports it by name too
    for i in range(50):
        assert verifies(signed(build(subject=f"message {i}")))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=200),
    body=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=2000),
)
def test_any_subject_and_body_sign_and_verify(subject: str, body: str) -> None:
    assert verifies(signed(build(subject=subject, text=body, html=None)))
