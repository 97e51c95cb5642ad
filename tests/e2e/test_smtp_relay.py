"""The SMTP relay and bounce intake of a live ``postroom serve``, on both databases, with real clients.

Python's ``smtplib`` and Debian's ``swaks`` submit mail with an API key as the password, over STARTTLS and over
implicit TLS; the worker delivers it, DKIM-signed, to the loopback sink with a VERP return path. Delivery status
notifications and ARF complaints sent to the bounce listener become events and suppressions.
"""

from __future__ import annotations

import base64
import email
import email.policy
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
import trustme
from sqlalchemy import select

from postroom.apikeys import service as keys_service
from postroom.audit.service import Actor
from postroom.core.clock import utcnow
from postroom.domains.service import SendingDomain
from postroom.models import auth_failures
from tests.conftest import Backend, Server, bearer, free_port, http_from, mail_env
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import ReceivedMessage, SmtpSink

DATA = Path(__file__).resolve().parents[1] / "data"
BOUNCE_HOST = "postroom.test"  # mail_env's POSTROOM_MAIL_HOSTNAME; no return-path host is configured
QUEUED = re.compile(r"Queued as (\d+)")


@dataclass
class Relay:
    server: Server
    submission: int
    submissions: int
    bounce: int
    ca: trustme.CA

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def starttls(self, source: str = "127.0.0.1") -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.submission, local_hostname="app.test", source_address=(source, 0))
        client.starttls(context=self.client_context())
        return client

    def implicit_tls(self, source: str = "127.0.0.1") -> smtplib.SMTP_SSL:
        return smtplib.SMTP_SSL(
            "127.0.0.1",
            self.submissions,
            local_hostname="app.test",
            source_address=(source, 0),
            context=self.client_context(),
        )


@pytest.fixture(scope="module")
def relay(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory, dns_server: DnsServer, smtp_sink: SmtpSink
) -> Iterator[Relay]:
    """A server with all three SMTP listeners on free ports and a certificate from a throwaway CA."""
    tmp = tmp_path_factory.mktemp(f"relay-{backend.name}")
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_pem.write_to_path(tmp / "key.pem")
    certificate.cert_chain_pems[0].write_to_path(tmp / "cert.pem")
    ports = {"POSTROOM_SMTP_PORT": free_port(), "POSTROOM_SMTPS_PORT": free_port(), "POSTROOM_BOUNCE_PORT": free_port()}
    env = {
        **mail_env(dns_server, smtp_sink),
        **{name: str(port) for name, port in ports.items()},
        "POSTROOM_SMTP_TLS_CERT": str(tmp / "cert.pem"),
        "POSTROOM_SMTP_TLS_KEY": str(tmp / "key.pem"),
    }
    server = Server(backend, tmp / "server.log", env=env).start()
    try:
        yield Relay(
            server,
            submission=ports["POSTROOM_SMTP_PORT"],
            submissions=ports["POSTROOM_SMTPS_PORT"],
            bounce=ports["POSTROOM_BOUNCE_PORT"],
            ca=ca,
        )
    finally:
        server.stop()


@pytest.fixture
def key(backend: Backend, sending_domain: SendingDomain) -> str:
    return backend.create_key(name="smtp").key


def compose(
    to: str = "reader@example.test", *, sender: str = "News <news@sender.test>", subject: str = "Hello", **headers: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if subject:
        message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Plain body\n")
    message.add_alternative("<p>HTML body</p>\n", subtype="html")
    return message


def submit(client: smtplib.SMTP, message: EmailMessage, recipients: list[str] | None = None) -> tuple[int, str]:
    """MAIL, RCPT and DATA by hand, to read the final reply (``sendmail`` drops it)."""
    code, reply = client.mail("app@sender.test")
    assert code == 250, reply
    for recipient in recipients or [message["To"]]:
        code, reply = client.rcpt(recipient)
        assert code == 250, reply
    code, reply = client.data(message.as_bytes())
    return code, reply.decode()


def request_id_of(reply: str) -> str:
    found = QUEUED.search(reply)
    assert found, reply
    return found.group(1)


def auth_plain(client: smtplib.SMTP, password: str, username: str = "lettr") -> tuple[int, str]:
    code, reply = client.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{username}\0{password}".encode()).decode())
    return code, reply.decode()


def dkim_verifies(received: ReceivedMessage, domain: SendingDomain) -> bool:
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name.decode().rstrip(".") == domain.dkim_record_name
        return domain.dkim_public_key.encode()

    return bool(dkim.verify(received.data, dnsfunc=lookup))


def events(server: Server, key: str, request_id: str, types: str, *, count: int = 1, timeout: float = 15) -> list[Any]:
    """The transmission's events of ``types``, once at least ``count`` of them exist."""
    deadline = time.monotonic() + timeout
    with http_from() as http:
        while True:
            response = http.get(
                server.api_url + "/emails/events",
                params={"transmissions": request_id, "events": types},
                headers=bearer(key),
            )
            assert response.status_code == 200, response.text
            found = response.json()["data"]["events"]["data"]
            if len(found) >= count or time.monotonic() > deadline:
                return list(found)
            time.sleep(0.1)


def suppressions(server: Server, key: str) -> dict[str, str]:
    with http_from() as http:
        response = http.get(server.api_url + "/suppressions", headers=bearer(key))
    return {s["email"]: s["reason"] for s in response.json()["data"]["suppressions"]}


# -- submission ---------------------------------------------------------------------------------------------


def test_smtplib_over_starttls_sends_a_message_that_arrives_dkim_signed_with_a_verp_return_path(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    message = compose("alice@example.test", Cc="carol@example.test", X_Campaign="autumn")
    with relay.starttls() as client:
        client.login("lettr", key)
        code, reply = submit(client, message, ["alice@example.test", "carol@example.test", "bob@example.test"])
    assert code == 250, reply
    assert "accepted 3, rejected 0" in reply
    request_id = request_id_of(reply)

    received = sink.wait_for(3)
    assert sorted(r for m in received for r in m.rcpt_tos) == [
        "alice@example.test",
        "bob@example.test",
        "carol@example.test",
    ]
    verp = re.compile(rf"bounces\+\d+-[0-9a-f]{{16}}@{re.escape(BOUNCE_HOST)}")
    assert all(verp.fullmatch(m.mail_from) for m in received), [m.mail_from for m in received]
    assert len({m.mail_from for m in received}) == 3  # one return path per recipient
    for delivered in received:
        assert delivered.tls
        assert dkim_verifies(delivered, sending_domain)
        parsed = email.message_from_bytes(delivered.data, policy=email.policy.default)
        assert parsed["From"] == "News <news@sender.test>"
        assert parsed["To"] == "alice@example.test" and parsed["Cc"] == "carol@example.test"
        assert parsed["Bcc"] is None and b"bob@example.test" not in delivered.data
        assert parsed["Subject"] == "Hello"
        assert parsed["X-Campaign"] == "autumn"
        assert parsed["Message-ID"].startswith(f"<{request_id}.")
        plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
        assert plain is not None and plain.get_content().strip() == "Plain body"
        assert html is not None and html.get_content().strip() == "<p>HTML body</p>"

    delivered_events = events(relay.server, key, request_id, "delivery", count=3)
    assert sorted(e["rcpt_type"] for e in delivered_events) == ["bcc", "cc", "to"]
    assert {e["recv_method"] for e in delivered_events} == {"esmtp"}


def test_smtplib_over_implicit_tls_sends_with_a_sending_only_key_and_an_attachment(
    relay: Relay, backend: Backend, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    sending_only = backend.create_key(permission="sending", name="smtp sending").key
    message = compose("tls@example.test", subject="Invoice")
    message.add_attachment(b"%PDF-1.4 test", maintype="application", subtype="pdf", filename="invoice.pdf")
    with relay.implicit_tls() as client:
        client.login("lettr", sending_only)
        client.send_message(message)
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ["tls@example.test"]
    assert dkim_verifies(received, sending_domain)
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == "invoice.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == b"%PDF-1.4 test"


# CI (POSTROOM_REQUIRE_POSTGRES=1, a fresh machine it provisions itself) must run them: there, absence fails.
swaks = pytest.mark.skipif(
    shutil.which("swaks") is None and os.environ.get("POSTROOM_REQUIRE_POSTGRES") != "1",
    reason="swaks is not installed (apt-get install swaks)",
)


def run_swaks(
    relay: Relay, key: str, to: str, *tls: str, port: int, headers: tuple[str, ...] = ("Subject: via swaks",)
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [
            "swaks", "--server", f"127.0.0.1:{port}", *tls, "--auth", "LOGIN", "--auth-user", "lettr",
            "--auth-password", key, "--from", "news@sender.test", "--to", to,
            *(arg for header in headers for arg in ("--header", header)),
            "--body", "Sent with swaks.", "--timeout", "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip


@swaks
@pytest.mark.parametrize("tls", ["--tls", "--tls-on-connect"], ids=["starttls", "implicit-tls"])
def test_swaks_sends_through_the_relay(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain, tls: str
) -> None:
    port = relay.submission if tls == "--tls" else relay.submissions
    result = run_swaks(relay, key, "swaks@example.test", tls, port=port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Queued as" in result.stdout
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ["swaks@example.test"]
    assert dkim_verifies(received, sending_domain)
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Subject"] == "via swaks"
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain.get_content().strip() == "Sent with swaks."


@swaks
def test_swaks_with_a_bad_key_gets_535(relay: Relay, sink: SmtpSink) -> None:
    result = run_swaks(relay, "lttr_" + "x" * 64, "nobody@example.test", "--tls", port=relay.submission)
    assert result.returncode != 0
    assert "535 5.7.8 Invalid API key." in result.stdout
    assert sink.messages == []


# -- keys ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["lttr_" + "x" * 64, "not-a-key", ""], ids=["well-formed-unknown", "malformed", "empty"]
)
def test_a_bad_key_gets_535_and_is_recorded(relay: Relay, backend: Backend, password: str) -> None:
    with relay.starttls(source="127.0.0.4") as client:
        client.ehlo()
        code, reply = auth_plain(client, password)
        assert code == 535, reply
        assert client.docmd("MAIL", "FROM:<app@sender.test>")[0] == 530  # still not logged in
    rows = backend.read(
        lambda conn: conn.execute(select(auth_failures).where(auth_failures.c.ip == "127.0.0.4")).fetchall()
    )
    assert [(r.method, r.path, r.counts_toward_lockout) for r in rows] == [("SMTP", "AUTH PLAIN", True)]
    assert password not in repr(rows) or not password


def test_smtplib_login_with_a_revoked_key_fails(relay: Relay, backend: Backend) -> None:
    created = backend.create_key(name="to revoke")
    backend.write(
        lambda conn: keys_service.revoke_key(
            conn, key_id=created.record.id, team_id=None, actor=Actor(name="tests"), now=utcnow()
        )
    )
    with relay.starttls() as client, pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
        client.login("lettr", created.key)
    assert excinfo.value.smtp_code == 535


def test_a_key_revoked_during_a_session_cannot_send_its_next_message(
    relay: Relay, backend: Backend, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    created = backend.create_key(name="revoked mid-session")
    with relay.starttls() as client:
        client.login("lettr", created.key)
        code, _ = submit(client, compose("first@example.test"))
        assert code == 250
        backend.write(
            lambda conn: keys_service.revoke_key(
                conn, key_id=created.record.id, team_id=None, actor=Actor(name="tests"), now=utcnow()
            )
        )
        code, reply = client.mail("app@sender.test")
    assert code == 535 and b"Invalid API key." in reply
    sink.wait_for(1)


def test_a_key_whose_allowlist_excludes_the_client_is_refused_with_550(
    relay: Relay, backend: Backend, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    only_local = backend.create_key(allowed_ips="127.0.0.1", name="allowlisted").key
    with relay.starttls(source="127.0.0.2") as client:
        client.ehlo()
        code, reply = auth_plain(client, only_local)
    assert (code, reply) == (550, "5.7.1 Access denied. Your IP address is not allowed.")
    with relay.starttls(source="127.0.0.1") as client:
        client.login("lettr", only_local)
        assert submit(client, compose("allowed@example.test"))[0] == 250
    sink.wait_for(1)
    rows = backend.read(
        lambda conn: conn.execute(select(auth_failures).where(auth_failures.c.ip == "127.0.0.2")).fetchall()
    )
    assert [(r.reason, r.method, r.counts_toward_lockout) for r in rows] == [("ip_not_allowed", "SMTP", False)]


def test_repeated_failures_lock_the_address_out_of_smtp_and_http_alike_but_not_valid_keys(
    relay: Relay, backend: Backend, key: str, sink: SmtpSink
) -> None:
    with relay.starttls(source="127.0.0.5") as client:
        client.ehlo()
        for _ in range(5):
            assert auth_plain(client, "lttr_" + "y" * 64)[0] == 535
        code, reply = auth_plain(client, "lttr_" + "y" * 64)  # the stale client keeps trying: locked out now
        assert code == 454 and "Too many failed authentication attempts" in reply
    with relay.starttls(source="127.0.0.5") as client:  # another application behind the same address
        client.login("lettr", key)
        assert submit(client, compose("shared-nat@example.test"))[0] == 250
    sink.wait_for(1)
    with http_from("127.0.0.5") as http:
        locked = http.get(relay.server.api_url + "/auth/check", headers=bearer("lttr_" + "y" * 64))
        admitted = http.get(relay.server.api_url + "/auth/check", headers=bearer(key))
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert admitted.status_code == 200


def test_any_username_is_accepted_with_a_warning(relay: Relay, key: str, sink: SmtpSink) -> None:
    with relay.starttls() as client:
        client.login("someone-else", key)
        assert submit(client, compose("anyuser@example.test"))[0] == 250
    sink.wait_for(1)
    assert "a username other than lettr" in relay.server.log_text()


def test_auth_answers_given_after_a_challenge_or_with_the_command_both_log_in(relay: Relay, key: str) -> None:
    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    with relay.starttls() as client:
        client.ehlo()
        assert client.docmd("AUTH", "PLAIN")[0] == 334  # an empty challenge
        assert client.docmd(b64(f"\0lettr\0{key}"))[0] == 235
    with relay.starttls() as client:
        client.ehlo()
        assert client.docmd("AUTH", "LOGIN " + b64("lettr"))[0] == 334  # username given: asked for the password
        assert client.docmd(b64(key))[0] == 235
    with relay.starttls() as client:
        client.ehlo()
        code, reply = client.docmd("AUTH", "PLAIN not*base64")
        assert (code, reply.decode()) == (501, "5.5.2 Can't decode base64")
        assert client.docmd("AUTH", "LOGIN")[0] == 334
        assert client.docmd("*")[0] == 501  # the client cancelled
        assert client.docmd("MAIL", "FROM:<app@sender.test>")[0] == 530


def test_no_authentication_or_mail_before_starttls(relay: Relay, key: str) -> None:
    with smtplib.SMTP("127.0.0.1", relay.submission, local_hostname="app.test") as client:
        client.ehlo()
        assert client.has_extn("starttls") and not client.has_extn("auth")
        assert auth_plain(client, key)[0] == 530
        assert client.docmd("MAIL", "FROM:<app@sender.test>")[0] == 530


# -- what a message becomes ---------------------------------------------------------------------------------


def test_an_unapproved_sender_domain_gets_550(relay: Relay, key: str, sink: SmtpSink) -> None:
    with relay.starttls() as client:
        client.login("lettr", key)
        code, reply = submit(client, compose(sender="someone@unknown.test"))
    assert code == 550
    assert reply == "5.7.1 The sender domain is not configured or approved for sending."


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (compose(subject=""), "subject"),
        (compose(List_Unsubscribe="http://insecure.test/u"), "headers.List-Unsubscribe"),
        (compose(sender="a@sender.test, b@sender.test"), "from"),
    ],
    ids=["no-subject", "bad-list-unsubscribe", "two-senders"],
)
def test_a_message_the_api_would_refuse_gets_554_naming_the_field(
    relay: Relay, key: str, sink: SmtpSink, message: EmailMessage, field: str
) -> None:
    with relay.starttls() as client:
        client.login("lettr", key)
        code, reply = submit(client, message, ["reader@example.test"])
    assert code == 554, reply
    assert reply.startswith("5.6.0 Validation failed.") and f"{field}:" in reply


def test_the_idempotency_key_header_makes_a_retry_a_replay(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    message = compose("once@example.test", Idempotency_Key="smtp-order-1")
    with relay.starttls() as client:
        client.login("lettr", key)
        first = submit(client, message)
        again = submit(client, message)
        message.replace_header("Subject", "Changed")
        conflict = submit(client, message)
    assert first[0] == again[0] == 250
    assert request_id_of(first[1]) == request_id_of(again[1])
    assert conflict[0] == 554 and "already used with a different request payload" in conflict[1]
    [received] = sink.wait_for(1)
    assert b"Idempotency-Key" not in received.data
    time.sleep(0.5)
    assert len(sink.messages) == 1


def test_a_suppressed_recipient_is_accepted_but_not_sent(
    relay: Relay, backend: Backend, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    from postroom.emails import service as emails_service

    backend.write(
        lambda conn: emails_service.suppress(
            conn, team_id=backend.team_id, email="blocked@example.test", reason="hard_bounce", source="test",
            now=utcnow(),
        )
    )  # fmt: skip
    with relay.starttls() as client:
        client.login("lettr", key)
        code, reply = submit(client, compose("blocked@example.test"))
    assert code == 250 and "accepted 0, rejected 1" in reply
    [rejection] = events(relay.server, key, request_id_of(reply), "policy_rejection")
    assert rejection["rcpt_to"] == "blocked@example.test"


# -- bounce intake ------------------------------------------------------------------------------------------


def send_and_deliver(relay: Relay, key: str, sink: SmtpSink, to: str) -> tuple[str, ReceivedMessage]:
    """Send one message through the relay and wait until the worker recorded its delivery."""
    with relay.starttls() as client:
        client.login("lettr", key)
        code, reply = submit(client, compose(to))
    assert code == 250, reply
    request_id = request_id_of(reply)
    [received] = sink.wait_for(1)
    events(relay.server, key, request_id, "delivery")
    return request_id, received


def report(template: str, received: ReceivedMessage, **replacements: str) -> bytes:
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    text = (DATA / template).read_text()
    values = {
        "__VERP__": received.mail_from,
        "__RECIPIENT__": received.rcpt_tos[0],
        "__MESSAGE_ID__": parsed["Message-ID"],
        **replacements,
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text.replace("\n", "\r\n").encode()


def deliver_report(relay: Relay, data: bytes, to: str, sender: str = "") -> None:
    with smtplib.SMTP("127.0.0.1", relay.bounce, local_hostname="mx.example.test") as client:
        client.sendmail(sender, [to], data)


def test_a_dsn_for_a_delivered_message_records_out_of_band_and_suppresses_a_hard_bounce(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    request_id, received = send_and_deliver(relay, key, sink, "gone-later@example.test")
    dsn = report("dsn_hard_bounce.eml", received)
    deliver_report(relay, dsn, received.mail_from)
    [event] = events(relay.server, key, request_id, "out_of_band")
    assert event["rcpt_to"] == "gone-later@example.test"
    assert event["bounce_class"] == 10
    assert event["error_code"] == "550"
    assert "User unknown in virtual mailbox table" in event["raw_reason"]
    assert suppressions(relay.server, key).get("gone-later@example.test") == "hard_bounce"

    deliver_report(relay, dsn, received.mail_from)  # the same report again records nothing more
    time.sleep(0.5)
    assert len(events(relay.server, key, request_id, "out_of_band")) == 1
    with relay.starttls() as client:
        client.login("lettr", key)
        assert "accepted 0, rejected 1" in submit(client, compose("gone-later@example.test"))[1]


def test_an_arf_complaint_records_spam_complaint_and_suppresses(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    request_id, received = send_and_deliver(relay, key, sink, "complainer@example.test")
    deliver_report(relay, report("arf_abuse.eml", received), received.mail_from, "feedback@fbl.mailbox.test")
    [event] = events(relay.server, key, request_id, "spam_complaint")
    assert event["rcpt_to"] == "complainer@example.test"
    assert event["fbtype"] == "abuse"
    assert event["report_by"] == "fbl.mailbox.test"
    assert event["report_to"] == BOUNCE_HOST
    assert suppressions(relay.server, key).get("complainer@example.test") == "spam_complaint"


def test_a_delay_notification_records_delay_without_suppressing(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    request_id, received = send_and_deliver(relay, key, sink, "slow-box@example.test")
    deliver_report(relay, report("dsn_delayed.eml", received), received.mail_from)
    [event] = events(relay.server, key, request_id, "delay")
    assert event["bounce_class"] == 22 and event["error_code"] == "452"
    assert "slow-box@example.test" not in suppressions(relay.server, key)


def test_a_report_to_the_bare_bounce_address_is_matched_by_message_id(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    request_id, received = send_and_deliver(relay, key, sink, "by-message-id@example.test")
    deliver_report(relay, report("dsn_hard_bounce.eml", received), f"bounces@{BOUNCE_HOST}")
    [event] = events(relay.server, key, request_id, "out_of_band")
    assert event["rcpt_to"] == "by-message-id@example.test"


@pytest.mark.parametrize(
    "address",
    [f"bounces+1-0123456789abcdef@{BOUNCE_HOST}", f"someone@{BOUNCE_HOST}", "bounces@elsewhere.test"],
    ids=["forged-token", "other-mailbox", "other-domain"],
)
def test_the_bounce_listener_refuses_every_other_address(relay: Relay, address: str) -> None:
    with smtplib.SMTP("127.0.0.1", relay.bounce, local_hostname="mx.example.test") as client:
        client.ehlo()
        assert not client.has_extn("auth")
        client.mail("")
        code, _ = client.rcpt(address)
    assert code == 550


def test_a_message_that_is_not_a_report_is_accepted_and_ignored(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    request_id, received = send_and_deliver(relay, key, sink, "autoreply@example.test")
    deliver_report(relay, report("dsn_without_report.eml", received), received.mail_from)
    time.sleep(0.5)
    assert events(relay.server, key, request_id, "out_of_band,bounce,spam_complaint", timeout=0) == []
    assert "autoreply@example.test" not in suppressions(relay.server, key)


# -- postroom smtp on its own -------------------------------------------------------------------------------


def test_postroom_smtp_runs_the_listeners_alone_with_a_self_signed_certificate(
    backend: Backend, relay: Relay, sink: SmtpSink, tmp_path: Path, key: str
) -> None:
    """``postroom smtp`` accepts; the worker of another process (here the relay server's) delivers."""
    port = free_port()
    env = backend.subprocess_env(
        {"POSTROOM_SMTP_PORT": str(port), "POSTROOM_SMTPS_PORT": "0", "POSTROOM_BOUNCE_PORT": "0",
         "POSTROOM_MAIL_HOSTNAME": "relay.postroom.test", "POSTROOM_SMTP_ALLOW_PLAIN": "1"}
    )  # fmt: skip
    log = (tmp_path / "smtp.log").open("wb")
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "postroom", "smtp"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while b"Postroom SMTP on" not in (tmp_path / "smtp.log").read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "smtp.log").read_text()
            time.sleep(0.1)
        certificate = Path(backend.env["POSTROOM_DATA_DIR"]) / "smtp-tls.pem"
        assert b"PRIVATE KEY" not in certificate.read_bytes()  # the file clients trust is the certificate alone
        with smtplib.SMTP("127.0.0.1", port, local_hostname="app.test") as client:
            client.ehlo()
            assert client.has_extn("auth")  # POSTROOM_SMTP_ALLOW_PLAIN=1
            client.starttls(context=ssl.create_default_context(cafile=str(certificate)))
            client.login("lettr", key)
            assert submit(client, compose("standalone@example.test"))[0] == 250
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    assert process.returncode == 0
    sink.wait_for(1, timeout=20)


def test_smtp_sends_count_against_the_teams_send_rate_limit(
    backend: Backend, relay: Relay, sink: SmtpSink, tmp_path: Path, key: str
) -> None:
    port = free_port()
    env = backend.subprocess_env(
        {"POSTROOM_SMTP_PORT": str(port), "POSTROOM_SMTPS_PORT": "0", "POSTROOM_BOUNCE_PORT": "0",
         "POSTROOM_SMTP_ALLOW_PLAIN": "1", "POSTROOM_SEND_RATE_LIMIT": "2/minute"}
    )  # fmt: skip
    log_path = tmp_path / "smtp.log"
    log = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "postroom", "smtp"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while b"Postroom SMTP on" not in log_path.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", port, local_hostname="app.test") as client:
            client.login("lettr", key)
            codes = [submit(client, compose(f"limited{n}@example.test")) for n in range(3)]
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    assert [code for code, _ in codes] == [250, 250, 451]
    assert "4.7.0 Rate limit exceeded" in codes[2][1]
    sink.wait_for(2, timeout=20)


@contextmanager
def held_port() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_in_use_stops_postroom_smtp_with_a_message(backend: Backend) -> None:
    with held_port() as port:
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "postroom", "smtp"],
            env=backend.subprocess_env(
                {"POSTROOM_SMTP_PORT": str(port), "POSTROOM_SMTPS_PORT": "0", "POSTROOM_BOUNCE_PORT": "0"}
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
