"""The local inbox in a real browser: a sandbox key made with the dashboard's choice, a message sent with it through
the official SDK, reached from its events, shown with its DKIM result, headers, text and raw source, and its HTML
rendered in a sandboxed frame where the message's own script never runs; nothing reaches the loopback MX."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from lettr import Lettr

from postroom.domains.service import SendingDomain
from tests.browser.conftest import PASSWORD, same_server, screenshot, setup_link
from tests.conftest import Backend, Server, wait_for_state
from tests.e2e.test_sandbox import suppress
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

HOSTILE_HTML = (
    "<html><head><style>p.greeting { color: rgb(0, 128, 0); }</style></head><body>"
    '<p class="greeting" id="greeting">Welcome aboard</p>'
    "<script>document.getElementById('greeting').textContent = 'script ran';</script>"
    "</body></html>"
)


@pytest.fixture(scope="module")
def page(browser: Any, server: Server, backend: Backend) -> Iterator[Any]:
    """A developer-or-better member signed in through the operator's setup link (no second factor needed)."""
    context = browser.new_context(base_url=server.base_url)
    page = context.new_page()
    page.goto(same_server(setup_link(backend, "inbox-owner@dashboard.test"), server))
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_again]", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(re.compile(r"/account/2fa"))
    yield page
    context.close()


def test_a_sandbox_message_is_shown_in_the_inbox_safely_and_linked_from_its_events(
    page: Any, server: Server, sending_domain: SendingDomain, sink: SmtpSink
) -> None:
    page.goto("/settings/api-keys")
    page.fill("#create-key input[name=name]", "Browser sandbox")
    page.check("#create-key input[name=permission][value=full]")
    page.check("#create-key input[name=kind][value=sandbox]")
    page.click("#create-key button.primary")
    if page.locator("input[name=reauth_password]").count():  # Full Access needs a confirmation after 5 minutes
        page.fill("input[name=reauth_password]", PASSWORD)
        page.click("text=Confirm and continue")
    key = str(page.input_value("#new-key"))
    assert key.startswith("lttr_sandbox_")
    page.goto("/settings/api-keys")
    assert "sandbox" in page.inner_text(f"#keys tr:has-text('{key[:20]}')")

    client = Lettr(key, base_url=server.api_url)
    subject = f"Inbox check {time.time_ns()}"
    sent = client.emails.send(
        from_email="app@sender.test", to=["reader@example.test"], subject=subject, html=HOSTILE_HTML,
        text="Welcome aboard, in plain text",
    )  # fmt: skip
    wait_for_state(client, sent.request_id, "delivered")

    page.goto("/inbox")
    row = page.locator("#inbox tbody tr", has_text=subject)
    assert row.count() == 1 and "reader@example.test" in row.inner_text()

    page.goto(f"/emails/{sent.request_id}")
    page.click(".inbox-link")
    page.wait_for_url(re.compile(r"/inbox/inb_"))
    assert page.inner_text("#dkim").startswith("pass")
    assert "d=sender.test" in page.inner_text("#dkim")
    assert "Welcome aboard, in plain text" in page.inner_text("#text")
    assert subject in page.inner_text("#headers")
    assert page.inner_text("#raw").startswith("DKIM-Signature:")
    assert page.get_attribute("#rendered", "sandbox") == ""

    frame = page.frame_locator("#rendered")
    greeting = frame.locator("#greeting")
    greeting.wait_for()
    assert greeting.inner_text() == "Welcome aboard"  # the message's script did not run
    assert greeting.evaluate("e => getComputedStyle(e).color") == "rgb(0, 128, 0)"  # its own styles did apply
    screenshot(page, "inbox-message")

    page.click("#events-link")
    page.wait_for_url(re.compile(rf"/emails/{sent.request_id}"))
    assert page.locator("#events tbody tr", has_text="delivery").count() == 1
    assert sink.messages == []


def test_a_suppressed_recipient_is_explained_on_the_message_page(
    page: Any, server: Server, backend: Backend, sending_domain: SendingDomain
) -> None:
    address = f"gone-{time.time_ns()}@example.test"
    suppress(backend, address)
    client = Lettr(backend.create_key(name="live for suppression").key, base_url=server.api_url)
    sent = client.emails.send(from_email="app@sender.test", to=[address], subject="Refused", text="x")
    assert (sent.accepted, sent.rejected) == (0, 1)

    page.goto(f"/emails/{sent.request_id}")
    why = page.inner_text(".suppressed-why")
    assert "suppression list" in why and f"postroom suppressions remove {address}" in why
    events = page.inner_text("#events")
    assert "policy_rejection" in events and "Recipient address is on the suppression list." in events
