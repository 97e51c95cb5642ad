"""Recording opens and clicks on both engines: unique opens counted once under concurrency, and write-behind
losing nothing it queued once drained."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Connection, func, select

from postroom.core.clock import utcnow
from postroom.domains.service import SendingDomain
from postroom.emails import service as emails_service
from postroom.messages.request import SendRequest
from postroom.models import email_events, recipients
from postroom.tracking import service
from postroom.tracking.recorder import EventRecorder
from tests.conftest import Backend

HUMAN = service.Client("GET", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36", "198.51.100.9")


def _recipient(backend: Backend, domain: SendingDomain) -> tuple[str, int]:
    def accept(conn: Connection) -> tuple[str, int]:
        request = SendRequest(from_email=f"news@{domain.domain}", to=("r@example.test",), subject="s", html="<p>x</p>")
        accepted = emails_service.accept(
            conn, team_id=backend.team_id, api_key_id=None, request=request, now=utcnow(), mail_hostname="t.test"
        )
        found = select(recipients.c.id).where(recipients.c.message_id == accepted.message_id)
        return accepted.message_id, int(conn.execute(found).scalar_one())

    return backend.write(accept)


def _counts(backend: Backend, message_id: str) -> dict[str, int]:
    def count(conn: Connection) -> dict[str, int]:
        query = (
            select(email_events.c.type, func.count())
            .where(email_events.c.message_id == message_id)
            .group_by(email_events.c.type)
        )
        return {row[0]: int(row[1]) for row in conn.execute(query)}

    return backend.read(count)


def test_concurrent_human_opens_make_one_initial_open(backend: Backend, sending_domain: SendingDomain) -> None:
    message_id, recipient_id = _recipient(backend, sending_domain)
    recorder = EventRecorder(backend.db, write_behind=False)

    async def opens() -> None:
        unit: Any = lambda conn: service.record_open(conn, recipient_id=recipient_id, client=HUMAN, now=utcnow())  # noqa: E731
        await asyncio.gather(*(recorder.record(unit) for _ in range(20)))

    backend.loop.run(opens())
    counts = _counts(backend, message_id)
    assert counts["open"] == 20 and counts["initial_open"] == 1
    opened = backend.read(
        lambda conn: conn.execute(select(recipients.c.opened_at).where(recipients.c.id == recipient_id)).scalar()
    )
    assert opened is not None


def test_write_behind_loses_nothing_once_drained(backend: Backend, sending_domain: SendingDomain) -> None:
    message_id, recipient_id = _recipient(backend, sending_domain)
    recorder = EventRecorder(backend.db, write_behind=True)

    async def clicks() -> None:
        unit: Any = lambda conn: service.record_click(  # noqa: E731
            conn, recipient_id=recipient_id, target="https://example.com/", client=HUMAN, now=utcnow()
        )
        await asyncio.gather(*(recorder.record(unit) for _ in range(1200)))  # answered: more than one batch queued
        await recorder.drain()

    backend.loop.run(clicks())
    assert _counts(backend, message_id) == {"injection": 1, "click": 1200}
    firsts = backend.read(
        lambda conn: conn.execute(
            select(func.count()).where(
                email_events.c.message_id == message_id, email_events.c.details.like('%"first_click":true%')
            )
        ).scalar()
    )
    assert firsts == 1
