"""Signed tokens, HTML instrumentation, CSS inlining and the machine-open rules, one function at a time."""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.core.clock import utcnow
from postroom.delivery.render import inline_styles
from postroom.messages.request import SendRequest
from postroom.tracking import rewriting, tokens
from postroom.tracking.service import Client, MachineReason, machine_reason

SECRET = b"k" * 32
BASE = "https://t.postroom.test"


def test_a_token_round_trips_and_is_compact_and_url_safe() -> None:
    token = tokens.make(SECRET, "open", "12345")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert len(token) < 40
    assert tokens.read(SECRET, "open", token) == "12345"


def test_a_token_for_one_purpose_or_key_does_not_verify_for_another() -> None:
    token = tokens.make(SECRET, "open", "1")
    assert tokens.read(SECRET, "click", token) is None
    assert tokens.read(b"x" * 32, "open", token) is None


@given(st.integers(min_value=0), st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
def test_any_altered_character_is_refused(position: int, replacement: str) -> None:
    token = tokens.make(SECRET, "click", "7|https://example.com/a?b=1")
    at = position % len(token)
    altered = token[:at] + replacement + token[at + 1 :]
    if altered != token:
        assert tokens.read(SECRET, "click", altered) is None


def test_expiry_is_signed_and_enforced() -> None:
    token = tokens.make(SECRET, "unsubscribe", "c_1", expires_at=2_000)
    assert tokens.read(SECRET, "unsubscribe", token, now=1_999) == "c_1"
    assert tokens.read(SECRET, "unsubscribe", token, now=2_000) is None


@pytest.mark.parametrize("garbage", ["", ".", "a.b.c", "!!!.???", "abc", "x" * 9000 + ".y"])
def test_malformed_tokens_are_refused(garbage: str) -> None:
    assert tokens.read(SECRET, "open", garbage) is None


def test_a_click_token_whose_payload_is_not_a_web_url_is_refused() -> None:
    forged = tokens.make(SECRET, rewriting.CLICK_PURPOSE, "1|javascript:alert(1)")
    assert rewriting.read_click(SECRET, forged) is None


HTML = """<html><body>
<a href="https://example.com/a?x=1&amp;y=2">one</a>
<a class="b" href='http://example.com/b'>two</a>
<a href="mailto:someone@example.com">mail</a>
<a href="#top">anchor</a>
<a href="/relative">relative</a>
<a data-unsubscribe href="https://example.com/unsubscribe">unsubscribe</a>
<a href="https://t.postroom.test/u/abc">ours</a>
<area href=https://example.com/map>
</body></html>"""


def test_links_are_rewritten_to_signed_click_urls_and_the_others_left_alone() -> None:
    out = rewriting.rewrite_links(HTML, base=BASE, secret=SECRET, recipient_id=42)
    clicks = re.findall(r'href="https://t\.postroom\.test/t/c/([^"]+)"', out)
    targets = [rewriting.read_click(SECRET, token) for token in clicks]
    assert targets == [
        (42, "https://example.com/a?x=1&y=2"),
        (42, "http://example.com/b"),
        (42, "https://example.com/map"),
    ]
    for untouched in ('"mailto:someone@example.com"', '"#top"', '"/relative"', '"https://example.com/unsubscribe"',
                      '"https://t.postroom.test/u/abc"'):  # fmt: skip
        assert untouched in out


def test_the_pixel_goes_before_the_last_body_end_or_at_the_end() -> None:
    out = rewriting.add_pixel("<p>hi</p></body></html>", base=BASE, secret=SECRET, recipient_id=5)
    token = re.search(r'<img src="https://t\.postroom\.test/t/o/([^"]+)" width="1" height="1"', out)
    assert token is not None and rewriting.read_open(SECRET, token.group(1)) == 5
    assert out.endswith("/></body></html>")
    assert rewriting.add_pixel("<p>x</p>", base=BASE, secret=SECRET, recipient_id=5).startswith("<p>x</p><img ")


def test_instrument_follows_the_options_and_leaves_text_alone() -> None:
    request = SendRequest(
        from_email="a@sender.test", to=("b@example.test",), html='<a href="https://x.test/">x</a>', text="https://x.test/",
        options={"click_tracking": True},
    )  # fmt: skip
    out = rewriting.instrument(request, base=BASE, secret=SECRET, recipient_id=1)
    assert "/t/c/" in (out.html or "") and "/t/o/" not in (out.html or "")
    assert out.text == "https://x.test/"
    assert rewriting.tracks(request)
    assert not rewriting.tracks(SendRequest(from_email="a@s.test", to=("b@e.test",), text="t", options=request.options))


def test_inline_css_moves_style_rules_into_attributes_only_when_asked() -> None:
    html = "<html><head><style>p { color: red }</style></head><body><p>Hi</p></body></html>"
    asked = SendRequest(from_email="a@s.test", to=("b@e.test",), html=html, options={"inline_css": True})
    out = inline_styles(asked).html or ""
    assert '<p style="color: red;">Hi</p>' in out and "<style>" not in out
    assert inline_styles(SendRequest(from_email="a@s.test", to=("b@e.test",), html=html)).html == html


def test_remote_stylesheets_are_not_fetched() -> None:
    html = '<html><head><link rel="stylesheet" href="http://127.0.0.1:9/x.css"></head><body><p>Hi</p></body></html>'
    out = inline_styles(SendRequest(from_email="a@s.test", to=("b@e.test",), html=html, options={"inline_css": True}))
    assert "<p>Hi</p>" in (out.html or "")


def _recipient(status: str = "queued", delivered_ago: float = 60) -> tuple[str, float]:
    return status, delivered_ago


HUMAN = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


@pytest.mark.parametrize(
    ("client", "recipient", "reason"),
    [
        (Client("GET", HUMAN, "198.51.100.7"), _recipient("delivered", 60), None),
        (Client("HEAD", HUMAN, "198.51.100.7"), _recipient(), MachineReason.HEAD_REQUEST),
        (Client("GET", "Mozilla/5.0", "198.51.100.7"), _recipient(), MachineReason.PROXY),
        (Client("GET", HUMAN, "17.58.0.1"), _recipient(), MachineReason.PROXY),
        (Client("GET", "Barracuda Sentinel (EE)", "198.51.100.7"), _recipient(), MachineReason.USER_AGENT),
        (Client("GET", None, "198.51.100.7"), _recipient(), MachineReason.USER_AGENT),
        (Client("GET", HUMAN, "198.51.100.7"), _recipient("delivered", 0.5), MachineReason.TOO_SOON),
    ],
)
def test_machine_requests_are_recognised(
    client: Client, recipient: tuple[str, float], reason: MachineReason | None
) -> None:
    now = utcnow()
    row = SimpleNamespace(status=recipient[0], updated_at=now - timedelta(seconds=recipient[1]))
    assert machine_reason(client, row, now) is reason  # type: ignore[arg-type]
