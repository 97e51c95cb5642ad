"""The SMTP sink, driven by aiosmtplib (the client the delivery worker uses): what arrives, and each scripted
misbehaviour as the client sees it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.support.smtp_sink import ReceivedMessage, SmtpSink

MESSAGE = b"From: sender@example.test\r\nTo: rcpt@example.test\r\nSubject: hello\r\n\r\nHello, sink.\r\n"


@pytest.fixture(scope="module")
def plain_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def sink(plain_sink: SmtpSink) -> Iterator[SmtpSink]:
    plain_sink.clear()
    yield plain_sink
    plain_sink.clear()


@pytest.fixture(scope="module")
def tls_sink() -> Iterator[SmtpSink]:
    with SmtpSink(starttls=True) as sink:
        yield sink


async def _sendmail(
    port: int, recipients: list[str], message: bytes = MESSAGE, **options: object
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    """One connection, one message; plain text unless ``options`` say otherwise."""
    options.setdefault("start_tls", False)
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10, **options)  # type: ignore[arg-type]
    async with client:
        return await client.sendmail("sender@example.test", recipients, message)


def sendmail(
    port: int, recipients: list[str], message: bytes = MESSAGE, **options: object
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    return asyncio.run(_sendmail(port, recipients, message, **options))


def test_a_plain_send_arrives_whole(sink: SmtpSink) -> None:
    errors, reply = sendmail(sink.port, ["rcpt@example.test", "second@example.test"])
    assert errors == {}
    assert "queued as sink-" in reply
    [received] = sink.wait_for(1)
    assert received == ReceivedMessage(
        mail_from="sender@example.test",
        rcpt_tos=["rcpt@example.test", "second@example.test"],
        data=received.data,
        peer="127.0.0.1",
        tls=False,
    )
    assert received.data.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    assert sink.sessions == 1  # the controller's own readiness probe never said EHLO
    assert sink.rcpt_attempts("RCPT@example.test") == 1


def test_dot_stuffed_lines_arrive_unstuffed(sink: SmtpSink) -> None:
    message = b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n"
    sendmail(sink.port, ["rcpt@example.test"], message)
    [received] = sink.wait_for(1)
    assert b"\n.leading dot\r\n..two" in received.data


def test_the_email_api_also_works(sink: SmtpSink) -> None:
    msg = EmailMessage()
    msg["From"] = "sender@example.test"
    msg["To"] = "rcpt@example.test"
    msg["Subject"] = "via send()"
    msg.set_content("body")
    asyncio.run(aiosmtplib.send(msg, hostname="127.0.0.1", port=sink.port, start_tls=False, timeout=10))
    [received] = sink.wait_for(1)
    assert b"Subject: via send()" in received.data


def test_wait_for_times_out_with_a_helpful_message(sink: SmtpSink) -> None:
    with pytest.raises(AssertionError, match=r"expected 1 message\(s\) within 0.2s, got 0"):
        sink.wait_for(1, timeout=0.2)


def test_rejected_sole_recipient_raises_recipients_refused(sink: SmtpSink) -> None:
    sink.reject_recipient("nobody@example.test")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as excinfo:
        sendmail(sink.port, ["nobody@example.test"])
    [refusal] = excinfo.value.recipients
    assert (refusal.code, refusal.message, refusal.recipient) == (550, "5.1.1 No such user", "nobody@example.test")
    assert sink.messages == []
    # Permanent: a second try is refused the same way.
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        sendmail(sink.port, ["nobody@example.test"])
    assert sink.rcpt_attempts("nobody@example.test") == 2


def test_one_rejected_of_two_is_reported_per_recipient(sink: SmtpSink) -> None:
    sink.reject_recipient("nobody@example.test", code=553, message="5.1.3 Bad address")
    errors, _ = sendmail(sink.port, ["nobody@example.test", "rcpt@example.test"])
    assert {addr: (r.code, r.message) for addr, r in errors.items()} == {
        "nobody@example.test": (553, "5.1.3 Bad address")
    }
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ["rcpt@example.test"]


def test_deferred_recipient_is_accepted_after_n_tries(sink: SmtpSink) -> None:
    sink.defer_recipient("later@example.test", times=2)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as excinfo:
            sendmail(sink.port, ["later@example.test"])
        assert excinfo.value.recipients[0].code == 451
        assert excinfo.value.recipients[0].message == "4.3.0 Try again later"
    errors, _ = sendmail(sink.port, ["later@example.test"])
    assert errors == {}
    assert sink.wait_for(1)[0].rcpt_tos == ["later@example.test"]
    assert sink.rcpt_attempts("later@example.test") == 3
    assert sink.sessions == 3


def test_deferral_among_several_recipients_comes_back_as_a_4xx_error(sink: SmtpSink) -> None:
    # aiosmtplib treats any non-250/251 RCPT reply as a refusal; telling 4xx from 5xx is the caller's job.
    sink.defer_recipient("later@example.test", times=1, code=452, message="4.2.2 Mailbox full")
    errors, _ = sendmail(sink.port, ["later@example.test", "rcpt@example.test"])
    assert errors["later@example.test"].code == 452


def test_fail_data_fails_the_next_n_data_commands(sink: SmtpSink) -> None:
    sink.fail_data(1)
    with pytest.raises(aiosmtplib.SMTPDataError) as excinfo:
        sendmail(sink.port, ["rcpt@example.test"])
    assert (excinfo.value.code, excinfo.value.message) == (451, "4.3.0 Temporary failure")
    assert sink.messages == []
    sink.fail_data(1, code=554, message="5.6.0 Content rejected")
    with pytest.raises(aiosmtplib.SMTPDataError) as excinfo:
        sendmail(sink.port, ["rcpt@example.test"])
    assert excinfo.value.code == 554
    sendmail(sink.port, ["rcpt@example.test"])
    assert len(sink.wait_for(1)) == 1


def test_scripts_apply_within_one_connection(sink: SmtpSink) -> None:
    sink.fail_data(1)

    async def two_messages() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False, timeout=10) as client:
            with pytest.raises(aiosmtplib.SMTPDataError):
                await client.sendmail("sender@example.test", ["rcpt@example.test"], MESSAGE)
            await client.sendmail("sender@example.test", ["rcpt@example.test"], MESSAGE)

    asyncio.run(two_messages())
    assert len(sink.wait_for(1)) == 1
    assert sink.sessions == 1


def test_plain_sink_sends_without_tls_even_by_default() -> None:
    with SmtpSink() as sink:
        # start_tls=None (aiosmtplib's default) upgrades only when STARTTLS is offered; this sink does not offer it.
        asyncio.run(_sendmail(sink.port, ["rcpt@example.test"], start_tls=None))
        assert sink.wait_for(1)[0].tls is False


def test_starttls_upgrade_is_recorded(tls_sink: SmtpSink) -> None:
    tls_sink.clear()
    sendmail(tls_sink.port, ["rcpt@example.test"], start_tls=True, validate_certs=False)
    [received] = tls_sink.wait_for(1)
    assert received.tls is True
    assert tls_sink.sessions == 1  # EHLO again after STARTTLS is still one session


def test_starttls_with_a_validated_certificate(tls_sink: SmtpSink) -> None:
    tls_sink.clear()
    sendmail(tls_sink.port, ["rcpt@example.test"], start_tls=True, tls_context=tls_sink.client_ssl_context())
    assert tls_sink.wait_for(1)[0].tls is True


def test_starttls_is_optional(tls_sink: SmtpSink) -> None:
    tls_sink.clear()
    sendmail(tls_sink.port, ["rcpt@example.test"], start_tls=False)
    assert tls_sink.wait_for(1)[0].tls is False


def test_aiosmtplib_default_upgrades_when_offered_and_validates(tls_sink: SmtpSink) -> None:
    # start_tls=None means "STARTTLS if offered", with certificate validation on: the throwaway CA is not trusted,
    # and the failure surfaces as ssl's own error, not wrapped in an aiosmtplib exception.
    tls_sink.clear()
    with pytest.raises(ssl.SSLCertVerificationError):
        sendmail(tls_sink.port, ["rcpt@example.test"], start_tls=None)
    assert tls_sink.messages == []


def test_sink_on_localhost_and_a_fixed_port() -> None:
    with SmtpSink(hostname="localhost", starttls=True) as first:
        port = first.port
    with SmtpSink(hostname="localhost", port=port, starttls=True) as sink:
        assert sink.port == port
        asyncio.run(_sendmail(port, ["rcpt@example.test"], start_tls=True, tls_context=sink.client_ssl_context()))
        assert sink.wait_for(1)[0].tls is True
