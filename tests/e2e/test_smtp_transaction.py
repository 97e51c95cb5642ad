"""``smtp_session._sendmail`` against aiosmtplib's own ``sendmail``, on the same real SMTP server: the same
outcome for every script (accepted, partly refused, all refused, DATA refused), the same bytes delivered, and a
session that is clean for the next transaction after a refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiosmtplib
import pytest

from postroom.delivery.smtp_session import _sendmail
from tests.support.smtp_sink import SmtpSink

SENDER = "bounces+r1@postroom.test"
MESSAGE = (
    b"From: news@sender.test\r\nTo: a@example.test\r\nSubject: dots\r\n\r\n"
    b".a line that starts with a dot\r\n..and two\r\nlast line\r\n"
)
Send = Callable[[aiosmtplib.SMTP, list[str]], Awaitable[Any]]


async def _ours(client: aiosmtplib.SMTP, recipients: list[str]) -> Any:
    return await _sendmail(client, SENDER, recipients, MESSAGE)


async def _theirs(client: aiosmtplib.SMTP, recipients: list[str]) -> Any:
    refused, _ = await client.sendmail(SENDER, recipients, MESSAGE)
    return refused


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def _outcome(send: Send, sink: SmtpSink, recipients: list[str]) -> tuple[Any, list[tuple[str, list[str], bytes]]]:
    """What one transaction returned (refusals by address) or raised, then what a second transaction on the same
    session did, and what the server received."""

    async def run() -> tuple[Any, Any]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, timeout=10, start_tls=False)
        async with client:
            try:
                first: Any = {k: (v.code, v.message) for k, v in (await send(client, recipients)).items()}
            except aiosmtplib.SMTPRecipientsRefused as refused:
                first = ("all refused", sorted((r.recipient, r.code) for r in refused.recipients))
            except aiosmtplib.SMTPResponseException as error:
                first = (type(error).__name__, error.code, error.message)
            second = await send(client, ["after@example.test"])  # the session is still usable
            return first, {k: v.code for k, v in second.items()}

    outcome = asyncio.run(run())
    received = [(m.mail_from, m.rcpt_tos, m.data) for m in sink.messages]
    sink.clear()
    return outcome, received


@pytest.mark.parametrize(
    "script",
    ["accepted", "one of two refused", "all refused", "data refused"],
)
def test_the_same_outcome_as_aiosmtplib_sendmail(sink: SmtpSink, script: str) -> None:
    recipients = ["a@example.test", "b@example.test"]

    def prepare() -> None:
        if script == "one of two refused":
            sink.reject_recipient("b@example.test", 550, "5.1.1 No such user")
        elif script == "all refused":
            sink.reject_recipient("a@example.test", 550, "5.1.1 No such user")
            sink.reject_recipient("b@example.test", 451, "4.3.0 Try later")
        elif script == "data refused":
            sink.fail_data(1, 554, "5.7.1 Message refused")

    prepare()
    ours = _outcome(_ours, sink, recipients)
    prepare()
    theirs = _outcome(_theirs, sink, recipients)
    assert ours == theirs
    (first, second), received = ours
    assert second == {}
    assert received[-1] == (SENDER, ["after@example.test"], received[-1][2])
    if script == "accepted":
        assert first == {}
        assert received[0] == (SENDER, recipients, MESSAGE)  # lines starting with a dot arrive as they were
    if script == "one of two refused":
        assert first == {"b@example.test": (550, "5.1.1 No such user")}
        assert received[0] == (SENDER, ["a@example.test"], MESSAGE)
    if script in ("all refused", "data refused"):
        assert len(received) == 1  # only the second transaction's message
