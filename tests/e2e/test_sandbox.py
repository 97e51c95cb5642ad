"""Sandbox keys end to end on a live ``postroom serve``, both databases: mail sent with a ``lttr_sandbox_…`` key
through the official SDK and through ``smtplib`` runs the whole pipeline (validation, templates, DKIM, events,
signed webhooks) and lands in the local inbox, while the loopback MX that real sends reach receives nothing;
suppressions are neither consulted nor added; every change is refused with 403; the guard treats the key like
any other (checksum, allowlist, revocation)."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from lettr import Lettr
from lettr._exceptions import ForbiddenError
from pytest_httpserver import HTTPServer

from postroom.audit.service import Actor
from postroom.core.clock import utcnow
from postroom.domains import service as domains_service
from postroom.emails import service as emails_service
from postroom.inbox import service as inbox_service
from postroom.webhooks import verify
from tests.conftest import Backend, Server, bearer, free_port, http_from, mail_env, wait_for_state
from tests.e2e.test_smtp_relay import request_id_of, submit
from tests.e2e.test_webhooks import Inbox, events_of, wait_until
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink

DOMAIN = "sandbox-sender.test"
SANDBOX_REFUSED = {"message": "Sandbox API keys cannot make changes. Use a live API key for this action.",
                   "error_code": "sandbox_key_not_allowed"}  # fmt: skip


@pytest.fixture(scope="module")
def sandbox_server(
    own_backend: Backend, tmp_path_factory: pytest.TempPathFactory, dns_server: DnsServer, smtp_sink: SmtpSink
) -> Iterator[Server]:
    """A server of its own whose MX lookups for example.test reach the loopback sink, with plain SMTP submission."""
    own_backend.write(
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
    env = {
        **mail_env(dns_server, smtp_sink),
        "POSTROOM_WEBHOOK_ALLOW_PRIVATE": "1",
        "POSTROOM_WEBHOOK_RETRY_SCALE": "0.001",
        "POSTROOM_SMTP_PORT": str(free_port()),
        "POSTROOM_SMTP_ALLOW_PLAIN": "1",
    }
    server = Server(own_backend, tmp_path_factory.mktemp(f"sandbox-{own_backend.name}") / "server.log", env=env)
    server.smtp_port = int(env["POSTROOM_SMTP_PORT"])  # type: ignore[attr-defined]
    yield server.start()
    server.stop()


@pytest.fixture
def sandbox_key(own_backend: Backend, sandbox_server: Server) -> str:
    return own_backend.create_key(name="sandbox", sandbox=True).key


@pytest.fixture
def live(own_backend: Backend, sandbox_server: Server) -> Lettr:
    return Lettr(own_backend.create_key(name="live").key, base_url=sandbox_server.api_url)


def captures_of(backend: Backend, request_id: str) -> list[inbox_service.CaptureView]:
    def read(conn: Any) -> list[inbox_service.CaptureView]:
        message = emails_service.get_message(conn, team_id=backend.team_id, request_id=request_id)
        listed, _ = inbox_service.list_captures(conn, team_id=backend.team_id, message_id=message.id)
        return [inbox_service.view_capture(conn, team_id=backend.team_id, capture_id=c.id) for c in listed]

    return backend.read(read)


def suppress(backend: Backend, address: str) -> None:
    """Put ``address`` on the team's suppression list, as a hard bounce would."""
    backend.write(
        lambda conn: emails_service.suppress(
            conn, team_id=backend.team_id, email=address, reason="hard_bounce", source="test", now=utcnow()
        )
    )


def test_a_sandbox_key_has_the_sandbox_prefix_and_a_valid_checksum(sandbox_key: str) -> None:
    from postroom.auth.keys import is_well_formed

    assert sandbox_key.startswith("lttr_sandbox_") and len(sandbox_key) == len("lttr_sandbox_") + 64
    assert is_well_formed(sandbox_key)
    assert not is_well_formed(sandbox_key[:-1] + ("A" if sandbox_key[-1] != "A" else "B"))


def test_an_sdk_send_with_a_sandbox_key_is_delivered_into_the_inbox_signed_and_with_signed_webhooks(
    sandbox_server: Server, sandbox_key: str, live: Lettr, own_backend: Backend, receiver: HTTPServer, sink: SmtpSink
) -> None:
    receiver.clear()
    hook = Inbox(receiver, "/sandbox")
    created = httpx.post(
        sandbox_server.api_url + "/webhooks",
        json={"name": "sandbox", "url": hook.url, "auth_type": "none", "events_mode": "all"},
        headers=bearer(live._client._api_key),  # noqa: SLF001
    )
    assert created.status_code == 201, created.text
    secret = created.json()["data"]["signing_secret"]
    try:
        client = Lettr(sandbox_key, base_url=sandbox_server.api_url)
        template = live.templates.create(name=f"Sandbox {time.time_ns()}", html="<p>Hello <b>{{name}}</b></p>")
        response = client.emails.send(
            from_email=f"hello@{DOMAIN}", to=["alice@example.test", "bob@example.test"], subject="Sandboxed for {{name}}",
            template_slug=template.slug, substitution_data={"name": "Ada"}, metadata={"order": "7"},
        )  # fmt: skip
        assert (response.accepted, response.rejected) == (2, 0)
        detail = wait_for_state(client, response.request_id, "delivered")
        assert sorted(e.type for e in detail.events) == ["delivery", "delivery", "injection", "injection"]

        captures = captures_of(own_backend, response.request_id)
        assert sorted(c.capture.rcpt_to for c in captures) == ["alice@example.test", "bob@example.test"]
        for capture in captures:
            assert capture.html is not None and "<p>Hello <b>Ada</b></p>" in capture.html
            assert capture.dkim.result == "pass", capture.dkim.detail
            assert ("Subject", "Sandboxed for Ada") in capture.headers
            assert capture.capture.subject == "Sandboxed for Ada"
            assert capture.raw.startswith("DKIM-Signature:")

        hook.wait_for(lambda box: events_of(box, response.request_id).count("delivery") == 2)
        for body, headers in hook.requests:
            assert verify(body, headers["Lettr-Signature"], secret)
        delivered = [e for e in hook.events() if e["type"] == "delivery"]
        assert {e["rcpt_to"] for e in delivered} == {"alice@example.test", "bob@example.test"}
        assert all(e["rcpt_meta"] == {"order": "7"} for e in delivered)
        assert sink.messages == []  # the loopback MX of example.test got nothing
    finally:
        # Delete once the receiver's answers are recorded: on PostgreSQL a delete racing an in-flight webhook
        # delivery can deadlock (a 500 that has nothing to do with sandbox keys).
        hook_id = created.json()["data"]["id"]
        wait_until(lambda: live.webhooks.get(hook_id).last_status == "success", what="the success to be recorded")
        live.webhooks.delete(hook_id)


def test_an_smtp_submission_with_a_sandbox_key_lands_in_the_inbox_and_not_at_the_mx(
    sandbox_server: Server, sandbox_key: str, own_backend: Backend, sink: SmtpSink
) -> None:
    message = EmailMessage()
    message["From"] = f"App <app@{DOMAIN}>"
    message["To"] = "carol@example.test"
    message["Subject"] = "Over SMTP"
    message.set_content("Sent with smtplib\n")
    with smtplib.SMTP("127.0.0.1", sandbox_server.smtp_port, local_hostname="app.test") as smtp:  # type: ignore[attr-defined]
        smtp.login("lettr", sandbox_key)
        code, reply = submit(smtp, message)
    assert code == 250, reply
    request_id = request_id_of(reply)
    client = Lettr(sandbox_key, base_url=sandbox_server.api_url)
    wait_for_state(client, request_id, "delivered")
    (capture,) = captures_of(own_backend, request_id)
    assert capture.capture.rcpt_to == "carol@example.test"
    assert capture.text is not None and "Sent with smtplib" in capture.text
    assert capture.dkim.result == "pass"
    assert sink.messages == []


def test_live_mail_still_reaches_the_mx_beside_sandbox_mail(
    sandbox_server: Server, live: Lettr, own_backend: Backend, sink: SmtpSink
) -> None:
    response = live.emails.send(from_email=f"hello@{DOMAIN}", to=["dave@example.test"], subject="Live", text="x")
    wait_for_state(live, response.request_id, "delivered")
    assert [m.rcpt_tos for m in sink.wait_for(1)] == [["dave@example.test"]]
    assert captures_of(own_backend, response.request_id) == []


def test_sandbox_sends_neither_consult_nor_add_suppressions(
    sandbox_server: Server, sandbox_key: str, live: Lettr, own_backend: Backend
) -> None:
    suppress(own_backend, "gone@example.test")
    client = Lettr(sandbox_key, base_url=sandbox_server.api_url)
    sandboxed = client.emails.send(from_email=f"hello@{DOMAIN}", to=["gone@example.test"], subject="S", text="x")
    assert (sandboxed.accepted, sandboxed.rejected) == (1, 0)
    wait_for_state(client, sandboxed.request_id, "delivered")
    assert [c.capture.rcpt_to for c in captures_of(own_backend, sandboxed.request_id)] == ["gone@example.test"]

    # A live key is refused the same address, and says why in the send response and the event.
    refused = live.emails.send(from_email=f"hello@{DOMAIN}", to=["gone@example.test"], subject="L", text="x")
    assert (refused.accepted, refused.rejected) == (0, 1)
    (event,) = live.emails.get(refused.request_id).events
    assert event.type == "policy_rejection"
    assert event.reason == "Recipient address is on the suppression list."
    with http_from() as http:
        listed = http.get(sandbox_server.api_url + "/suppressions", headers=bearer(live._client._api_key))  # noqa: SLF001
    assert [s["email"] for s in listed.json()["data"]["suppressions"]] == ["gone@example.test"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/domains", {"domain": "new.test"}),
        ("DELETE", f"/domains/{DOMAIN}", None),
        ("POST", f"/domains/{DOMAIN}/verify", None),
        ("POST", "/templates", {"name": "T", "html": "<p>x</p>"}),
        ("DELETE", "/templates/anything", None),
        (
            "POST",
            "/webhooks",
            {"name": "w", "url": "https://hooks.example/x", "auth_type": "none", "events_mode": "all"},
        ),
        ("DELETE", "/webhooks/wh_x", None),
        ("DELETE", "/suppressions/gone@example.test", None),
        ("DELETE", "/emails/scheduled/sch_x", None),
        ("POST", "/audience/lists", {"name": "Newsletter"}),
        ("POST", "/audience/contacts", {"email": "someone@example.test"}),
        ("POST", "/audience/contacts/bulk", {"contacts": [{"email": "someone@example.test"}]}),
        ("DELETE", "/audience/contacts/ct_x", None),
        ("POST", "/audience/topics", {"name": "News"}),
        ("POST", "/audience/properties", {"name": "plan", "type": "string"}),
        ("POST", "/audience/segments", {"name": "s", "conditions": []}),
    ],
)
def test_a_sandbox_key_is_refused_every_change_with_403(
    sandbox_server: Server, sandbox_key: str, method: str, path: str, body: Any
) -> None:
    with http_from() as http:
        response = http.request(method, sandbox_server.api_url + path, json=body, headers=bearer(sandbox_key))
    assert response.status_code == 403, response.text
    assert response.json() == SANDBOX_REFUSED


def test_the_sdk_sees_the_sandbox_refusal_as_forbidden_and_reads_still_work(
    sandbox_server: Server, sandbox_key: str
) -> None:
    client = Lettr(sandbox_key, base_url=sandbox_server.api_url)
    with pytest.raises(ForbiddenError) as refused:
        client.domains.create("another.test")
    assert refused.value.error_code == "sandbox_key_not_allowed"
    with pytest.raises(ForbiddenError) as refused:
        client.audience.lists.create(name="Newsletter")
    assert refused.value.error_code == "sandbox_key_not_allowed"
    assert client.audience.lists.list().total == 0
    assert DOMAIN in [d.domain for d in client.domains.list()]
    assert client.auth_check().team_id > 0


def test_the_guard_treats_a_sandbox_key_like_any_other(sandbox_server: Server, own_backend: Backend) -> None:
    restricted = own_backend.create_key(name="sandbox-ip", sandbox=True, allowed_ips="127.0.0.9").key
    sending_only = own_backend.create_key(name="sandbox-sending", sandbox=True, permission="sending").key
    with http_from("127.0.0.1") as http:
        refused_ip = http.get(sandbox_server.api_url + "/domains", headers=bearer(restricted))
        mistyped = http.get(
            sandbox_server.api_url + "/domains",
            headers=bearer(restricted[:-1] + ("0" if restricted[-1] != "0" else "1")),
        )
        no_scope = http.get(sandbox_server.api_url + "/domains", headers=bearer(sending_only))
    assert (refused_ip.status_code, refused_ip.json()) == (
        403,
        {"message": "Access denied. Your IP address is not allowed."},
    )
    assert (mistyped.status_code, mistyped.json()) == (401, {"message": "Invalid API key."})
    assert no_scope.status_code == 403 and no_scope.json()["error_code"] == "insufficient_scope"
    with http_from("127.0.0.9") as http:
        assert http.get(sandbox_server.api_url + "/domains", headers=bearer(restricted)).status_code == 200


def test_the_cli_creates_and_rotates_sandbox_keys(own_backend: Backend) -> None:
    import json

    from tests.conftest import run_cli

    created = run_cli(own_backend, "keys", "create", "--name", "CLI sandbox", "--sandbox", "--json")
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["key"].startswith("lttr_sandbox_") and body["sandbox"] is True
    assert body["display_prefix"] == body["key"][:20]
    described = run_cli(own_backend, "keys", "create", "--name", "CLI sandbox 2", "--sandbox")
    assert '"CLI sandbox 2" (Sandbox, Full Access; allowed IPs: any address)' in described.stdout
    rotated = run_cli(own_backend, "keys", "rotate", body["id"], "--grace-hours", "0", "--json")
    assert rotated.returncode == 0, rotated.stderr
    successor = json.loads(rotated.stdout)
    assert successor["key"].startswith("lttr_sandbox_") and successor["sandbox"] is True  # it stays a sandbox key


def test_a_scheduled_sandbox_send_is_released_into_the_inbox(
    sandbox_server: Server, sandbox_key: str, own_backend: Backend, sink: SmtpSink
) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.e2e.test_sending import _release_now

    client = Lettr(sandbox_key, base_url=sandbox_server.api_url)
    scheduled = client.emails.schedule(
        from_email=f"hello@{DOMAIN}", to=["erin@example.test"], subject="Later", text="x",
        scheduled_at=datetime.now(UTC) + timedelta(minutes=10),
    )  # fmt: skip
    _release_now(own_backend, scheduled.request_id)
    deadline = time.monotonic() + 20
    while (current := client.emails.get_scheduled(scheduled.request_id)).state != "sent":
        assert time.monotonic() < deadline, current.state
        time.sleep(0.1)
    assert current.transmission_id is not None
    wait_for_state(client, current.transmission_id, "delivered")
    assert [c.capture.rcpt_to for c in captures_of(own_backend, current.transmission_id)] == ["erin@example.test"]
    assert sink.messages == []
