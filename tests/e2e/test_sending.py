"""Sending through the official SDK to a live Postroom, which delivers to a real SMTP server on loopback found
through a real DNS server on loopback: DKIM, retries, bounces, suppression, events, idempotency, scheduling."""

from __future__ import annotations

import concurrent.futures
import email
import email.policy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import dkim
import httpx
import pytest
from lettr import Lettr
from lettr._exceptions import (
    BadRequestError,
    ConflictError,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    NotFoundError,
    ValidationError,
)
from lettr._types import Attachment
from sqlalchemy import Connection, select, text, update

from postroom.domains.service import SendingDomain
from postroom.models import idempotency_keys, scheduled_emails, work_items
from tests.conftest import Backend, Server, bearer, http_from, wait_for_state
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink


@pytest.fixture
def client(server: Server, backend: Backend, sending_domain: SendingDomain) -> Lettr:
    return Lettr(backend.create_key().key, base_url=server.api_url)


def dkim_dns(dns_server: DnsServer, domain: SendingDomain) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name.decode().rstrip(".") == domain.dkim_record_name
        return domain.dkim_public_key.encode()

    return lookup


def test_a_send_arrives_dkim_signed_with_every_part(
    client: Lettr, sink: SmtpSink, dns_server: DnsServer, sending_domain: SendingDomain
) -> None:
    response = client.emails.send(
        from_email="news@sender.test",
        from_name="Sender Ltd",
        to=["alice@example.test"],
        cc=["carol@example.test"],
        bcc=["bob@example.test"],
        reply_to="help@sender.test",
        subject="Your order ✓",
        text="Plain body",
        html="<p>HTML body</p>",
        headers={
            "X-Campaign": "autumn",
            "List-Unsubscribe": "<https://sender.test/u/42>, <mailto:unsub@sender.test>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        metadata={"order": "1234"},
        attachments=[Attachment(name="a.txt", type="text/plain", data="aGVsbG8=")],
    )
    assert response.accepted == 3 and response.rejected == 0
    assert response.request_id.isdigit()
    every = sink.wait_for(3)  # one transaction per recipient: each has its own VERP return path
    rcpt_tos = sorted(r for m in every for r in m.rcpt_tos)
    assert rcpt_tos == ["alice@example.test", "bob@example.test", "carol@example.test"]
    assert all(m.mail_from.startswith("bounces+") and m.mail_from.endswith("@postroom.test") for m in every)
    assert len({m.data for m in every}) == 1  # the same signed message
    received = every[0]
    assert received.tls
    assert dkim.verify(received.data, dnsfunc=dkim_dns(dns_server, sending_domain))
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Subject"] == "Your order ✓"
    assert parsed["From"] == "Sender Ltd <news@sender.test>"
    assert parsed["Cc"] == "carol@example.test"
    assert parsed["Bcc"] is None and b"bob@example.test" not in received.data
    assert parsed["X-Campaign"] == "autumn"
    assert parsed["List-Unsubscribe"] == "<https://sender.test/u/42>, <mailto:unsub@sender.test>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    dkim_header = parsed["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
    assert "list-unsubscribe:list-unsubscribe-post" in dkim_header
    assert parsed["Message-ID"].startswith(f"<{response.request_id}.")
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and plain.get_content().strip() == "Plain body"
    assert html is not None and html.get_content().strip() == "<p>HTML body</p>"
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == "a.txt" and attachment.get_content() == "hello"

    detail = wait_for_state(client, response.request_id, "delivered")
    assert detail.num_recipients == 3
    types = sorted(e.type for e in detail.events)
    assert types == ["delivery"] * 3 + ["injection"] * 3
    delivery = next(e for e in detail.events if e.type == "delivery" and e.rcpt_to == "alice@example.test")
    assert delivery.message_id == parsed["Message-ID"].strip("<>")
    assert delivery.outbound_tls == "1"
    assert delivery.rcpt_meta == {"order": "1234"}
    assert {e.recv_method for e in detail.events} == {"rest"}


def test_temporary_failures_are_retried_until_delivered(client: Lettr, sink: SmtpSink) -> None:
    sink.defer_recipient("slow@example.test", times=2)
    response = client.emails.send(from_email="news@sender.test", to=["slow@example.test"], subject="Retry", text="x")
    [received] = sink.wait_for(1, timeout=30)
    assert received.rcpt_tos == ["slow@example.test"]
    assert sink.rcpt_attempts("slow@example.test") == 3
    detail = wait_for_state(client, response.request_id, "delivered")
    delays = [e for e in detail.events if e.type == "delay"]
    assert len(delays) == 2
    assert all(e.bounce_class is not None and e.reason for e in delays)


def test_a_permanent_failure_bounces_and_suppresses(
    server: Server, sink: SmtpSink, backend: Backend, sending_domain: SendingDomain
) -> None:
    key = backend.create_key().key
    client = Lettr(key, base_url=server.api_url)
    sink.reject_recipient("gone@example.test", 550, "5.1.1 The email account that you tried to reach does not exist")
    first = client.emails.send(
        from_email="news@sender.test", to=["gone@example.test", "ok@example.test"], subject="Hi", text="x"
    )
    sink.wait_for(1)
    deadline = time.monotonic() + 15
    while True:
        events = client.emails.list_events(transmissions=first.request_id, events=["bounce"])
        if events.results or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    [bounce] = events.results
    assert bounce.rcpt_to == "gone@example.test"
    assert bounce.bounce_class == 10
    assert bounce.error_code == "550"
    assert bounce.raw_reason == "550 5.1.1 The email account that you tried to reach does not exist"

    second = client.emails.send(from_email="news@sender.test", to=["gone@example.test"], subject="Again", text="x")
    assert (second.accepted, second.rejected) == (0, 1)
    rejected = client.emails.list_events(transmissions=second.request_id)
    assert [e.type for e in rejected.results] == ["policy_rejection"]
    time.sleep(0.5)
    assert len(sink.messages) == 1  # nothing more was sent

    with http_from() as http:
        listed = http.get(server.api_url + "/suppressions", headers=bearer(key)).json()
        assert "gone@example.test" in [s["email"] for s in listed["data"]["suppressions"]]
        removed = http.delete(server.api_url + "/suppressions/gone@example.test", headers=bearer(key))
        assert removed.status_code == 200
    third = client.emails.send(from_email="news@sender.test", to=["gone@example.test"], subject="Again", text="x")
    assert (third.accepted, third.rejected) == (1, 0)


def test_sending_from_an_unapproved_domain_is_refused(client: Lettr) -> None:
    with pytest.raises(BadRequestError) as excinfo:
        client.emails.send(from_email="a@unknown.test", to=["x@example.test"], subject="Hi", text="x")
    assert excinfo.value.error_code == "unconfigured_domain"
    assert str(excinfo.value) == "The sender domain is not configured or approved for sending."


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": ["a@example.test"], "subject": "s", "text": "t"}, "from"),
        ({"from": "n@sender.test", "subject": "s", "text": "t"}, "to"),
        ({"from": "n@sender.test", "to": ["a@example.test"], "subject": "s\r\nBcc: x@evil.test", "text": "t"}, "subject"),
        ({"from": "n@sender.test", "to": ["a@example.test>\r\nRCPT TO:<x@evil.test"], "subject": "s", "text": "t"}, "to.0"),
        ({"from": "n@sender.test", "to": ["a@example.test, b@example.test"], "subject": "s", "text": "t"}, "to.0"),
        ({"from": "n@sender.test", "to": ["a@example.test"], "subject": "s", "text": "t", "headers": {"X-A": "1\n2"}}, "headers.X-A"),
        ({"from": "n@sender.test", "to": ["a@example.test"], "subject": "s", "text": "t", "headers": {"From": "x@y.z"}}, "headers.From"),
        ({"from": "n@sender.test", "to": [f"r{i}@example.test" for i in range(51)], "subject": "s", "text": "t"}, "to"),
        ({"from": "n@sender.test", "to": ["a@example.test"], "subject": "s"}, "html"),
        ({"from": "n@sender.test", "to": ["a@example.test"], "subject": "s", "text": "t", "headers": {"List-Unsubscribe": "http://x"}}, "headers.List-Unsubscribe"),
        ({"from": "n@sender.test", "to": ["a@example.test"], "subject": "s", "text": "t", "headers": {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}, "headers.List-Unsubscribe-Post"),
        ({"from": "n@sender.test", "to": ["a@example.test"], "subject": "s", "text": "t", "attachments": [{"name": "a", "type": "text/plain", "data": "not base64!"}]}, "attachments.0.data"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_422_naming_the_field(
    server: Server, backend: Backend, body: dict[str, Any], field: str
) -> None:
    with http_from() as http:
        response = http.post(server.api_url + "/emails", json=body, headers=bearer(backend.create_key().key))
    assert response.status_code == 422, response.text
    assert response.json()["error_code"] == "validation_error"
    assert field in response.json()["errors"]


def test_an_oversized_body_gets_413_before_it_is_read(server: Server, backend: Backend) -> None:
    with http_from() as http:
        response = http.post(
            server.api_url + "/emails",
            content=b"{" + b" " * (13 * 1024 * 1024) + b"}",
            headers={**bearer(backend.create_key().key), "Content-Type": "application/json"},
        )
    assert response.status_code == 413


def test_idempotency_replays_conflicts_and_reports_in_progress(
    server: Server, sink: SmtpSink, backend: Backend, sending_domain: SendingDomain
) -> None:
    created = backend.create_key()  # idempotency records belong to one key: this test holds one as that key
    client = Lettr(created.key, base_url=server.api_url)
    send: dict[str, Any] = {
        "from_email": "news@sender.test",
        "to": ["idem@example.test"],
        "subject": "Once",
        "text": "x",
    }
    first = client.emails.send(**send, idempotency_key="order-1")
    again = client.emails.send(**send, idempotency_key="order-1")
    assert again.request_id == first.request_id and again.replayed and not first.replayed
    with pytest.raises(IdempotencyConflictError):
        client.emails.send(**{**send, "subject": "Different"}, idempotency_key="order-1")
    sink.wait_for(1)
    time.sleep(0.5)
    assert len(sink.messages) == 1

    from postroom.core.clock import utcnow
    from postroom.emails import idempotency

    body = {"from": "news@sender.test", "to": ["idem@example.test"], "subject": "Held", "text": "x"}
    backend.write(
        lambda conn: idempotency.claim(
            conn, team_id=backend.team_id, api_key_id=created.record.id, key="held", fingerprint=idempotency.fingerprint(body),
            now=utcnow(),
        )
    )  # fmt: skip
    with pytest.raises(IdempotencyInProgressError) as excinfo:
        client.emails.send(
            from_email="news@sender.test", to=["idem@example.test"], subject="Held", text="x", idempotency_key="held"
        )
    assert excinfo.value.retry_after == 1


def test_twenty_identical_concurrent_sends_make_one_message(
    server: Server, backend: Backend, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    key = backend.create_key().key
    body = {"from": "news@sender.test", "to": ["burst@example.test"], "subject": "Burst", "text": "x"}

    def post(_: int) -> httpx.Response:
        with http_from() as http:
            return http.post(
                server.api_url + "/emails", json=body, headers={**bearer(key), "Idempotency-Key": "burst-1"}
            )

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    ok = [r for r in responses if r.status_code == 200]
    assert ok and all(r.status_code in (200, 409) for r in responses)
    assert len({r.json()["data"]["request_id"] for r in ok}) == 1
    assert all(r.json()["error_code"] == "idempotency_in_progress" for r in responses if r.status_code == 409)
    sink.wait_for(1)
    time.sleep(0.5)
    assert len(sink.messages) == 1


def test_an_idempotent_send_that_is_refused_replays_the_refusal(
    server: Server, backend: Backend, sending_domain: SendingDomain
) -> None:
    key = backend.create_key()
    headers = {**bearer(key.key), "Idempotency-Key": "refused-1"}
    body = {"from": "news@unapproved.test", "to": ["a@example.test"], "subject": "s", "text": "t"}
    with http_from() as http:
        first = http.post(server.api_url + "/emails", json=body, headers=headers)
        again = http.post(server.api_url + "/emails", json=body, headers=headers)
        accepted = http.post(
            server.api_url + "/emails",
            json={**body, "from": "news@sender.test"},
            headers={**bearer(key.key), "Idempotency-Key": "accepted-1"},
        )
    assert first.status_code == 400 and first.json()["error_code"] == "unconfigured_domain"
    assert "idempotency-replayed" not in first.headers
    assert (again.status_code, again.json()) == (400, first.json())
    assert again.headers["idempotency-replayed"] == "true"
    assert accepted.status_code == 200

    def records(conn: Connection) -> dict[str, tuple[str, int | None]]:
        rows = conn.execute(
            select(idempotency_keys.c.key, idempotency_keys.c.status, idempotency_keys.c.response_status).where(
                idempotency_keys.c.api_key_id == key.record.id
            )
        )
        return {row.key: (row.status, row.response_status) for row in rows}

    # The refusal and the accepted send are each stored finished: no claim is left in progress.
    assert backend.read(records) == {"refused-1": ("done", 400), "accepted-1": ("done", 200)}


def test_a_malformed_idempotency_key_gets_the_sdks_422(server: Server, backend: Backend) -> None:
    with http_from() as http:
        response = http.post(
            server.api_url + "/emails",
            json={"from": "n@sender.test", "to": ["a@example.test"], "subject": "s", "text": "t"},
            headers={**bearer(backend.create_key().key), "Idempotency-Key": "has space"},
        )
    assert response.status_code == 422
    assert response.json()["errors"] == {
        "Idempotency-Key": ["Use 1 to 255 letters, digits, periods, underscores or hyphens."]
    }


def test_lists_page_with_cursors(client: Lettr, sink: SmtpSink) -> None:
    sent = [
        client.emails.send(from_email="news@sender.test", to=[f"page{i}@example.test"], subject=f"P{i}", text="x")
        for i in range(3)
    ]
    first = client.emails.list(per_page=2, recipients="page1@example.test")
    assert [e.request_id for e in first.results] == [sent[1].request_id]
    assert first.total_count == 1
    page = client.emails.list_events(per_page=2, events=["injection"])
    assert len(page.results) == 2 and page.next_cursor
    rest = client.emails.list_events(per_page=2, events=["injection"], cursor=page.next_cursor)
    seen = {e.event_id for e in page.results}
    assert rest.results and not seen & {e.event_id for e in rest.results}
    with pytest.raises(NotFoundError):
        client.emails.get("12345")
    sink.wait_for(3)  # let these deliveries finish inside this test


def _release_now(backend: Backend, scheduled_id: str) -> None:
    now = datetime.now(UTC)

    def shift(conn: Connection) -> None:  # time passing: the send's moment has come
        conn.execute(update(work_items).where(work_items.c.ref == scheduled_id).values(run_at=now))
        conn.execute(update(scheduled_emails).where(scheduled_emails.c.id == scheduled_id).values(scheduled_at=now))
        if conn.dialect.name == "postgresql":  # and for the queue job that will wake a worker for it
            item_id = conn.execute(select(work_items.c.id).where(work_items.c.ref == scheduled_id)).scalar_one()
            conn.execute(
                text("UPDATE pgqueuer SET execute_after = now() WHERE payload = :payload"),
                {"payload": str(item_id).encode()},
            )

    backend.write(shift)


def test_scheduled_sends_wait_release_and_cancel(client: Lettr, sink: SmtpSink, backend: Backend) -> None:
    at = datetime.now(UTC) + timedelta(minutes=10)
    scheduled = client.emails.schedule(
        from_email="news@sender.test", to=["later@example.test"], subject="Later", text="x", scheduled_at=at
    )
    assert scheduled.state == "scheduled" and scheduled.request_id.startswith("sch_")
    assert scheduled.transmission_id is None and scheduled.accepted == 1
    assert client.emails.get_scheduled(scheduled.request_id).state == "scheduled"
    assert scheduled.request_id in [
        s.request_id for s in client.emails.list_scheduled(status="scheduled").scheduled_emails
    ]

    _release_now(backend, scheduled.request_id)
    deadline = time.monotonic() + 15
    while (current := client.emails.get_scheduled(scheduled.request_id)).state != "sent":
        assert time.monotonic() < deadline, current.state
        time.sleep(0.1)
    assert current.transmission_id
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ["later@example.test"]
    with pytest.raises(ConflictError) as excinfo:
        client.emails.cancel_scheduled(scheduled.request_id)
    assert excinfo.value.error_code == "schedule_cancellation_failed"

    other = client.emails.schedule(
        from_email="news@sender.test", to=["never@example.test"], subject="Never", text="x", scheduled_at=at
    )
    cancelled = client.emails.cancel_scheduled(other.request_id)
    assert cancelled.state == "cancelled" and cancelled.accepted == 0
    _release_now(backend, other.request_id)
    time.sleep(1.5)
    assert client.emails.get_scheduled(other.request_id).state == "cancelled"
    assert len(sink.messages) == 1


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        (timedelta(minutes=2), "The scheduled delivery time must be at least 5 minutes ahead."),
        (timedelta(days=31), "The scheduled delivery time must be within the next 30 days."),
        (timedelta(minutes=-5), "The scheduled delivery time must be in the future."),
    ],
)
def test_schedule_window_is_enforced(client: Lettr, delta: timedelta, message: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        client.emails.schedule(
            from_email="news@sender.test", to=["x@example.test"], subject="s", text="x",
            scheduled_at=datetime.now(UTC) + delta,
        )  # fmt: skip
    assert excinfo.value.errors == {"scheduled_at": [message]}


def test_sessions_to_one_server_are_reused(client: Lettr, sink: SmtpSink) -> None:
    for i in range(4):
        client.emails.send(from_email="news@sender.test", to=[f"reuse{i}@example.test"], subject="s", text="x")
        sink.wait_for(i + 1)
    assert sink.sessions < 4
