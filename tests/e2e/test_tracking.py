"""Open and click tracking end to end: a tracked send reaches the loopback SMTP sink DKIM-signed with its pixel and
rewritten links; fetching those (with httpx, and in headless Chromium) records ``open``, ``initial_open`` and
``click`` events, redirects to the original URL, and fires signed ``engagement.*`` webhooks to a real receiver.
Forged tokens are refused, machine requests flagged, tracking domains verified against a loopback DNS server, and
the public endpoints rate-limited per client address. The webhook receiver (also the landing pages' server) is
the one of test_webhooks.py.

The server runs on a database of its own (``own_backend``, both engines) with webhooks allowed to reach loopback.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import dkim
import httpx
import pytest
from lettr import Lettr
from lettr._exceptions import ServerError
from lettr._types import EmailOptions
from pytest_httpserver import HTTPServer

from postroom.audit.service import Actor
from postroom.core.clock import utcnow
from postroom.domains import service as domains_service
from postroom.domains.service import SendingDomain
from postroom.tracking.service import MACHINE_WINDOW
from postroom.webhooks import verify
from tests.conftest import Backend, Server, bearer, http_from, mail_env
from tests.e2e.test_webhooks import Inbox, wait_until
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import ReceivedMessage, SmtpSink

DOMAIN = "tracked.test"
TRACKING_HOST = "links.tracked.test"
HUMAN = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def domain(own_backend: Backend, dns_server: DnsServer) -> SendingDomain:
    added = own_backend.write(
        lambda conn: domains_service.add_domain(
            conn,
            team_id=own_backend.team_id,
            name=DOMAIN,
            approve=True,
            actor=Actor(name="tests"),
            now=utcnow(),
            settings=own_backend.settings,
        )
    )
    dns_server.add(added.dkim_record_name, "TXT", added.dkim_public_key)
    return added


@pytest.fixture(scope="module")
def tracking_server(
    own_backend: Backend,
    domain: SendingDomain,
    tmp_path_factory: pytest.TempPathFactory,
    dns_server: DnsServer,
    smtp_sink: SmtpSink,
) -> Iterator[Server]:
    env = {
        **mail_env(dns_server, smtp_sink),
        "POSTROOM_WEBHOOK_ALLOW_PRIVATE": "1",
        "POSTROOM_WEBHOOK_RETRY_SCALE": "0.001",
        "POSTROOM_TRACKING_RATE_LIMIT": "40/minute",
    }
    server = Server(own_backend, tmp_path_factory.mktemp(f"tracking-{own_backend.name}") / "server.log", env=env)
    yield server.start()
    server.stop()


@pytest.fixture
def client(tracking_server: Server, own_backend: Backend, receiver: HTTPServer) -> Iterator[Lettr]:
    receiver.clear()
    lettr = Lettr(own_backend.create_key().key, base_url=tracking_server.api_url)
    yield lettr
    for hook in lettr.webhooks.list():
        try:
            lettr.webhooks.delete(hook.id)
        except ServerError:  # PostgreSQL can report a deadlock with a delivery still in flight: once more
            lettr.webhooks.delete(hook.id)


def landing(receiver: HTTPServer, path: str) -> str:
    receiver.expect_request(path, method="GET").respond_with_data(
        f"<html><title>landed {path}</title><body>landed</body></html>", content_type="text/html"
    )
    return f"http://127.0.0.1:{receiver.port}{path}"


def subscribe(client: Lettr, receiver: HTTPServer, path: str) -> tuple[Inbox, str]:
    inbox = Inbox(receiver, path)  # answers 200
    created = client.webhooks.create(
        name="engagement", url=inbox.url, auth_type="none", events_mode="selected",
        events=["engagement.open", "engagement.initial_open", "engagement.click"],
    )  # fmt: skip
    secret = httpx.post(
        f"{client._client._base_url}/webhooks/{created.id}/rotate-secret",  # noqa: SLF001
        json={"force": True},
        headers=bearer(client._client._api_key),  # noqa: SLF001
    ).json()["data"]["signing_secret"]
    return inbox, secret


def send_tracked(client: Lettr, sink: SmtpSink, html: str, to: str = "reader@example.test") -> tuple[str, str]:
    """Send, wait for the sink; the request id and the HTML part as the recipient's server received it."""
    before = len(sink.messages)
    response = client.emails.send(
        from_email=f"news@{DOMAIN}", to=[to], subject="Tracked", html=html, text="Plain https://x.test/",
        options=EmailOptions(open_tracking=True, click_tracking=True, inline_css=True),
    )  # fmt: skip
    received = sink.wait_for(before + 1)[-1]
    return response.request_id, html_of(received)


def html_of(received: ReceivedMessage) -> str:
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    part = parsed.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def delivered_at(client: Lettr, request_id: str) -> datetime:
    def found() -> Any:
        events = client.emails.get(request_id).events
        return next((e for e in events if e.type == "delivery"), None)

    event = wait_until(found, what="the delivery event")
    return datetime.fromisoformat(str(event.timestamp).replace("Z", "+00:00"))


def past_the_machine_window(client: Lettr, request_id: str) -> None:
    """Wait until a person could have opened the message: opens just after delivery count as machine opens."""
    delivered = delivered_at(client, request_id)
    wait_until(lambda: utcnow() - delivered > MACHINE_WINDOW, what="the machine window to pass")


def tracked_urls(html: str) -> tuple[str, list[str]]:
    [pixel] = re.findall(r'<img src="([^"]+/t/o/[^"]+)"', html)
    return pixel, re.findall(r'href="([^"]+/t/c/[^"]+)"', html)


def events_of(client: Lettr, request_id: str, types: str) -> list[Any]:
    return list(client.emails.list_events(events=types.split(","), transmissions=request_id).results)


def test_opening_and_clicking_with_httpx_records_events_redirects_and_fires_signed_webhooks(
    client: Lettr, receiver: HTTPServer, sink: SmtpSink, dns_server: DnsServer, domain: SendingDomain,
    tracking_server: Server,
) -> None:  # fmt: skip
    inbox, secret = subscribe(client, receiver, "/hooks/httpx")
    target = landing(receiver, "/offer") + "?id=7&from=mail"
    html = (
        "<html><head><style>a { color: #c00 }</style></head><body>"
        f'<p>Hello</p><a href="{target.replace("&", "&amp;")}">Offer</a> '
        '<a href="mailto:help@tracked.test">Help</a> <a href="#top">Top</a></body></html>'
    )
    request_id, received_html = send_tracked(client, sink, html)

    received = sink.messages[-1]
    assert dkim.verify(received.data, dnsfunc=lambda name, timeout=5: domain.dkim_public_key.encode())
    pixel, links = tracked_urls(received_html)
    assert len(links) == 1 and 'href="mailto:help@tracked.test"' in received_html and 'href="#top"' in received_html
    assert pixel.startswith(tracking_server.base_url + "/t/o/") and links[0].startswith(tracking_server.base_url)
    assert 'style="color: #c00;"' in received_html  # inline_css
    plain = email.message_from_bytes(received.data, policy=email.policy.default).get_body(("plain",))
    assert plain is not None and plain.get_content().strip() == "Plain https://x.test/"  # text parts untouched
    detail = client.emails.get(request_id)
    assert all(e.open_tracking and e.click_tracking for e in detail.events)

    past_the_machine_window(client, request_id)
    with http_from("127.0.0.1") as http:
        opened = http.get(pixel, headers={"User-Agent": HUMAN})
        assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
        assert opened.content[:10] == b"GIF89a\x01\x00\x01\x00" and len(opened.content) == 42  # 1×1
        assert "no-store" in opened.headers["cache-control"]
        again = http.get(pixel, headers={"User-Agent": HUMAN})
        assert again.status_code == 200
        clicked = http.get(links[0], headers={"User-Agent": HUMAN}, follow_redirects=False)
        assert clicked.status_code == 302 and clicked.headers["location"] == target
        assert http.get(links[0], headers={"User-Agent": HUMAN}, follow_redirects=False).status_code == 302

    opens = events_of(client, request_id, "open")
    assert len(opens) == 2 and all(e.user_agent == HUMAN and e.ip_address == "127.0.0.1" for e in opens)
    [initial] = events_of(client, request_id, "initial_open")
    assert initial.rcpt_to == "reader@example.test"
    clicks = events_of(client, request_id, "click")
    assert len(clicks) == 2 and {e.target_link_url for e in clicks} == {target}
    raw = httpx.get(
        f"{tracking_server.api_url}/emails/events", params={"events": "click,open", "transmissions": request_id},
        headers=bearer(client._client._api_key),  # noqa: SLF001
    ).json()["data"]["events"]["data"]  # fmt: skip
    assert sorted(e["first_click"] for e in raw if e["type"] == "click") == [False, True]
    assert not any(e.get("machine_open") or e.get("machine_click") for e in raw)
    detail_types = sorted(str(e.type) for e in client.emails.get(request_id).events)
    assert detail_types == ["click", "click", "delivery", "initial_open", "injection", "open", "open"]

    wait_until(lambda: len(inbox.events()) >= 5, what="five engagement webhooks")
    names = sorted(e["event_name"] for e in inbox.events())
    assert names == ["engagement.click"] * 2 + ["engagement.initial_open"] + ["engagement.open"] * 2
    assert {e["target_link_url"] for e in inbox.events() if e["type"] == "click"} == {target}
    assert all(e["transmission_id"] == request_id for e in inbox.events())
    for body, headers in inbox.requests:
        assert verify(body, headers["Lettr-Signature"], secret)


def test_forged_or_altered_tokens_are_refused_without_a_redirect(
    client: Lettr, sink: SmtpSink, tracking_server: Server, receiver: HTTPServer
) -> None:
    request_id, received_html = send_tracked(client, sink, f'<a href="{landing(receiver, "/x")}">x</a>')
    pixel, [link] = tracked_urls(received_html)
    body, mac = link.rsplit("/", 1)[1].split(".")
    forged_target = "https://evil.example/"
    import base64

    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    forged_body = base64.urlsafe_b64encode(
        payload.rsplit("|", 1)[0].encode() + b"|" + forged_target.encode()
    ).decode().rstrip("=")  # fmt: skip
    base = tracking_server.base_url
    with http_from("127.0.0.1") as http:
        for bad in (
            f"{base}/t/c/{forged_body}.{mac}",  # another URL under the original signature
            f"{base}/t/c/{body}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}",  # an altered signature
            f"{base}/t/c/{pixel.rsplit('/', 1)[1]}",  # an open token used as a click
            f"{base}/t/c/not-a-token",
        ):
            answer = http.get(bad, headers={"User-Agent": HUMAN}, follow_redirects=False)
            assert answer.status_code == 404 and "location" not in answer.headers
            assert answer.headers["content-type"].startswith("text/plain")
        assert http.get(f"{base}/t/o/{body}.{mac}", headers={"User-Agent": HUMAN}).status_code == 404
    assert events_of(client, request_id, "click,open") == []


def test_machine_requests_are_flagged_and_never_count_as_unique(
    client: Lettr, sink: SmtpSink, receiver: HTTPServer
) -> None:
    request_id, received_html = send_tracked(client, sink, f'<a href="{landing(receiver, "/m")}">m</a>')
    pixel, [link] = tracked_urls(received_html)
    past_the_machine_window(client, request_id)
    with http_from("127.0.0.1") as http:
        assert http.head(pixel, headers={"User-Agent": HUMAN}).status_code == 200
        assert http.get(pixel, headers={"User-Agent": "Mozilla/5.0"}).status_code == 200  # Mail Privacy Protection
        assert http.get(link, headers={"User-Agent": "Barracuda Sentinel"}, follow_redirects=False).status_code == 302
    raw = httpx.get(
        f"{client._client._base_url}/emails/events", params={"transmissions": request_id, "events": "open,click,initial_open"},  # noqa: SLF001
        headers=bearer(client._client._api_key),  # noqa: SLF001
    ).json()["data"]["events"]["data"]  # fmt: skip
    by_type = sorted((e["type"], e["machine_reason"]) for e in raw)
    assert by_type == [("click", "user_agent"), ("open", "head_request"), ("open", "privacy_proxy")]
    assert all(e.get("machine_open", e.get("machine_click")) is True for e in raw)
    assert not any(e.get("first_click") for e in raw if e["type"] == "click")
    proxy = next(e for e in raw if e["machine_reason"] == "privacy_proxy")
    assert proxy["user_agent_parsed"]["is_proxy"] is True


def test_the_public_endpoints_are_rate_limited_per_client_address(
    client: Lettr, sink: SmtpSink, tracking_server: Server
) -> None:
    _, received_html = send_tracked(client, sink, "<p>limits</p>")
    pixel, _ = tracked_urls(received_html)
    with http_from("127.0.0.77") as http:
        answers = [http.get(pixel, headers={"User-Agent": HUMAN}).status_code for _ in range(41)]
    assert answers[:40] == [200] * 40 and answers[40] == 429
    with http_from("127.0.0.78") as other:
        assert other.get(pixel, headers={"User-Agent": HUMAN}).status_code == 200


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")
def test_a_real_browser_loads_the_pixel_and_follows_the_link(
    client: Lettr, sink: SmtpSink, receiver: HTTPServer
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS

    inbox, secret = subscribe(client, receiver, "/hooks/browser")
    target = landing(receiver, "/browser-offer")
    request_id, received_html = send_tracked(
        client, sink, f'<html><body><a id="go" href="{target}">Go</a></body></html>'
    )
    past_the_machine_window(client, request_id)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            # A webmail on loopback shows the message as the sink received it; its images load.
            receiver.expect_request("/webmail").respond_with_data(received_html, content_type="text/html")
            page.goto(f"http://127.0.0.1:{receiver.port}/webmail", wait_until="load")
            wait_until(lambda: events_of(client, request_id, "open"), what="the browser's open")
            page.click("#go")
            page.wait_for_url(target)
            assert page.title() == "landed /browser-offer"
            agent = page.evaluate("navigator.userAgent")
        finally:
            browser.close()
    [opened] = events_of(client, request_id, "open")
    [clicked] = events_of(client, request_id, "click")
    assert opened.user_agent == agent and clicked.user_agent == agent and clicked.target_link_url == target
    assert len(events_of(client, request_id, "initial_open")) == 1
    wait_until(lambda: len(inbox.events()) >= 3, what="the browser's webhooks")
    assert sorted(e["type"] for e in inbox.events()) == ["click", "initial_open", "open"]
    assert all(verify(body, headers["Lettr-Signature"], secret) for body, headers in inbox.requests)


def test_a_verified_tracking_domain_carries_the_links(  # last: later messages of this module would carry it
    client: Lettr, sink: SmtpSink, dns_server: DnsServer, tracking_server: Server, receiver: HTTPServer
) -> None:
    key = client._client._api_key  # noqa: SLF001
    api = tracking_server.api_url
    refused = httpx.put(
        f"{api}/domains/{DOMAIN}/tracking-domain", json={"tracking_domain": "links.other.test"}, headers=bearer(key)
    )
    assert refused.status_code == 422 and "tracking_domain" in refused.json()["errors"]
    set_ = httpx.put(
        f"{api}/domains/{DOMAIN}/tracking-domain", json={"tracking_domain": TRACKING_HOST}, headers=bearer(key)
    )
    assert set_.status_code == 200, set_.text
    detail = client.domains.get(DOMAIN)
    assert detail.tracking_domain == TRACKING_HOST and detail.dns is not None
    [row] = [r for r in detail.dns["records"] if r["purpose"] == "tracking"]
    assert row == {"purpose": "tracking", "type": "CNAME", "name": TRACKING_HOST, "value": "127.0.0.1", "status": None}

    _, unverified_html = send_tracked(client, sink, f'<a href="{landing(receiver, "/d")}">d</a>')
    assert tracked_urls(unverified_html)[1][0].startswith(tracking_server.base_url)  # not verified yet

    dns_server.add(TRACKING_HOST, "CNAME", "127.0.0.1.")
    verified = client.domains.verify(DOMAIN)
    assert verified.dns is not None
    records = (client.domains.get(DOMAIN).dns or {})["records"]
    assert [r["status"] for r in records if r["purpose"] == "tracking"] == ["valid"]
    target = landing(receiver, "/t")

    def carried() -> str | None:  # the worker re-reads a domain at most every 10 s: send until a message has it
        _, html = send_tracked(client, sink, f'<a href="{target}">t</a>')
        link = tracked_urls(html)[1][0]
        return link if urlsplit(link).hostname == TRACKING_HOST else None

    link = wait_until(carried, timeout=30, what="links on the tracking domain")
    assert link is not None and link.startswith(f"http://{TRACKING_HOST}/t/c/")
    path = urlsplit(link).path
    with httpx.Client() as http:  # the tracking domain resolves to this server: connect there, name it in Host
        answer = http.get(
            f"{tracking_server.base_url}{path}", headers={"Host": TRACKING_HOST, "User-Agent": HUMAN},
            follow_redirects=False,
        )  # fmt: skip
    assert answer.status_code == 302 and answer.headers["location"] == target
