"""``Lettr-Signature``: what we send verifies with an independent HMAC, within ±300 s, and nothing tampered does
; plus the rules a delivery outcome follows (retry ladder, 410, auto-disable)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.webhooks import service, verify
from postroom.webhooks.schemas import EVENT_NAMES, canonical_event_name
from postroom.webhooks.signing import new_secret, signature_header

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NOW = 1_800_000_000


def scratch_verify(body: bytes, header: str, secret: str) -> bool:
    """An independent verifier written from the documented scheme alone."""
    fields = [part.split("=", 1) for part in header.split(",")]
    timestamp = next(v for k, v in fields if k == "t")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in fields if k == "v1")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=1000, deadline=None)
@given(payload=json_values, indent=st.sampled_from([None, 0, 2, 7]), ascii_only=st.booleans())
def test_any_body_we_sign_verifies_with_an_independent_hmac(
    payload: object, indent: int | None, ascii_only: bool
) -> None:
    body = json.dumps(payload, indent=indent, ensure_ascii=ascii_only).encode()
    header = signature_header([SECRET], NOW, body)
    assert scratch_verify(body, header, SECRET)
    assert verify(body, header, SECRET, now=NOW)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_within_300_seconds_either_way_are_accepted(skew: int) -> None:
    header = signature_header([SECRET], NOW + skew, b"[]")
    assert verify(b"[]", header, SECRET, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, -86400])
def test_timestamps_beyond_the_tolerance_either_way_are_refused(skew: int) -> None:
    header = signature_header([SECRET], NOW + skew, b"[]")
    assert not verify(b"[]", header, SECRET, now=NOW)
    assert verify(b"[]", header, SECRET, tolerance=abs(skew), now=NOW)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(min_size=1, max_size=200), data=st.data())
def test_flipping_any_byte_of_body_timestamp_or_signature_fails(body: bytes, data: st.DataObject) -> None:
    header = signature_header([SECRET], NOW, body)
    position = data.draw(st.integers(0, len(body) - 1))
    flipped = bytearray(body)
    flipped[position] ^= data.draw(st.integers(1, 255))
    assert not verify(bytes(flipped), header, SECRET, now=NOW)
    timestamp, signature = header.split(",")
    assert not verify(body, f"t={NOW + 1},{signature}", SECRET, now=NOW)
    index = data.draw(st.integers(3, len(signature) - 1))
    replacement = "0" if signature[index] != "0" else "1"
    assert not verify(body, f"{timestamp},{signature[:index]}{replacement}{signature[index + 1 :]}", SECRET, now=NOW)


def test_during_rotation_either_secret_verifies_and_a_stranger_does_not() -> None:
    old, new = new_secret(), new_secret()
    header = signature_header([new, old], NOW, b'[{"a":1}]')
    assert header.count("v1=") == 2
    assert verify(b'[{"a":1}]', header, old, now=NOW)
    assert verify(b'[{"a":1}]', header, new, now=NOW)
    assert not verify(b'[{"a":1}]', header, new_secret(), now=NOW)


@pytest.mark.parametrize(
    "header",
    ["", "t=abc,v1=00", "v1=00", f"t={NOW}", f"t={NOW},v0=00", f"t={NOW},t={NOW},v1=00", "garbage", "t=-5,v1=00"],
)
def test_malformed_headers_and_unknown_schemes_never_verify(header: str) -> None:
    assert not verify(b"[]", header, SECRET, now=NOW)


def test_an_unknown_scheme_next_to_a_good_v1_is_ignored() -> None:
    good = signature_header([SECRET], NOW, b"[]")
    assert verify(b"[]", good + ",v9=whatever", SECRET, now=NOW)


def test_secrets_are_whsec_and_32_random_bytes() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_str_bodies_verify_as_their_utf8_bytes() -> None:
    body = '[{"subject":"Grüße ✓"}]'
    assert verify(body, signature_header([SECRET], NOW, body.encode()), SECRET, now=NOW)


# -- delivery rules ---------------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_the_retry_ladder_is_1m_5m_30m_2h_8h_24h_then_failed() -> None:
    waits = []
    for attempt in range(1, service.MAX_ATTEMPTS + 1):
        decision = service.decide(status_code=500, attempt=attempt, now=T0)
        if decision.step is service.Step.EXHAUSTED:
            break
        assert decision.step is service.Step.RETRY and decision.retry_at is not None
        waits.append(decision.retry_at - T0)
    assert waits == [
        timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
        timedelta(hours=2), timedelta(hours=8), timedelta(hours=24),
    ]  # fmt: skip
    assert attempt == 7


@pytest.mark.parametrize(("status", "step"), [(200, "succeeded"), (204, "succeeded"), (299, "succeeded"),
                                               (301, "retry"), (302, "retry"), (304, "retry"), (400, "retry"),
                                               (404, "retry"), (429, "retry"), (500, "retry"), (None, "retry"),
                                               (410, "gone")])  # fmt: skip
def test_only_2xx_succeeds_410_disables_and_everything_else_retries(status: int | None, step: str) -> None:
    assert service.decide(status_code=status, attempt=1, now=T0).step.value == step


def test_the_retry_scale_shortens_every_delay() -> None:
    decision = service.decide(status_code=500, attempt=3, now=T0, retry_scale=0.001)
    assert decision.retry_at == T0 + timedelta(seconds=1.8)


def test_five_days_of_failure_disables() -> None:
    assert not service.should_auto_disable(failing_since=None, now=T0)
    assert not service.should_auto_disable(failing_since=T0 - timedelta(days=5) + timedelta(seconds=1), now=T0)
    assert service.should_auto_disable(failing_since=T0 - timedelta(days=5), now=T0)


@pytest.mark.parametrize(
    ("given_name", "canonical"),
    [("delivery", "message.delivery"), ("message.delivery", "message.delivery"), ("click", "engagement.click"),
     ("engagament.open", "engagement.open"), ("ENGAGEMENT.AMP_CLICK", "engagement.amp_click"),
     ("relay_permfail", "relay.relay_permfail"), ("list_unsubscribe", "unsubscribe.list_unsubscribe"),
     ("generation_failure", "generation.generation_failure"), ("email.delivered", None), ("", None)],
)  # fmt: skip
def test_event_names_are_normalised_to_the_22_canonical_ones(given_name: str, canonical: str | None) -> None:
    assert canonical_event_name(given_name) == canonical
    assert len(EVENT_NAMES) == 22
