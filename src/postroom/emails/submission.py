"""Submitting a send: the one path ``POST /api/emails`` and the SMTP relay share.

Validation (422), the idempotency claim, and the accepting transaction (message, recipients, events, work
items and the idempotency outcome, committed together) happen here in this order, so a message that arrives
over SMTP is checked, deduplicated and recorded exactly like one posted to the API. The caller learns the
outcome only after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from postroom.core.clock import utcnow
from postroom.core.envelope import envelope
from postroom.db.engine import Database
from postroom.emails import idempotency
from postroom.emails import service as emails_service
from postroom.errors import PostroomError
from postroom.messages.request import parse_send_request

SEND_MESSAGE = "Email queued for delivery."


@dataclass(frozen=True, slots=True)
class Submitted:
    """The response to give: the Lettr body and status, and whether it is a replay of an earlier one."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


async def submit_send(
    db: Database,
    *,
    team_id: int,
    api_key_id: str,
    body: dict[str, Any],
    idempotency_key: str | None,
    mail_hostname: str,
    recv_method: str = "rest",
    undisclosed_to: bool = False,
    sandbox: bool = False,
) -> Submitted:
    """Validate ``body`` (a ``POST /api/emails`` JSON object) and accept it; raises the Lettr errors.

    With an ``idempotency_key`` the key is claimed in the accepting transaction and the outcome stored with the
    send, so a duplicate that arrives meanwhile waits for that commit and replays it. A 4xx outcome is stored in a
    transaction of its own (the accepting one rolled back); a server error or a crash stores nothing, so a retry
    runs again. ``undisclosed_to`` is ``parse_send_request``'s (for Bcc-only SMTP mail).
    """
    send = parse_send_request(body, undisclosed_to=undisclosed_to)
    fingerprint = None if idempotency_key is None else idempotency.fingerprint(body)

    def claim(conn: Connection) -> int | idempotency.StoredResponse | None:
        if idempotency_key is None or fingerprint is None:
            return None
        return idempotency.claim(
            conn, team_id=team_id, api_key_id=api_key_id, key=idempotency_key, fingerprint=fingerprint, now=utcnow()
        )

    def accept(conn: Connection) -> Submitted:
        claimed = claim(conn)
        if isinstance(claimed, idempotency.StoredResponse):
            return Submitted(claimed.status, claimed.body, replayed=True)
        accepted = emails_service.accept(
            conn,
            team_id=team_id,
            api_key_id=api_key_id,
            request=send,
            now=utcnow(),
            mail_hostname=mail_hostname,
            recv_method=recv_method,
            sandbox=sandbox,
        )
        response = envelope(
            SEND_MESSAGE,
            {"request_id": accepted.request_id, "accepted": accepted.accepted, "rejected": accepted.rejected},
        )
        if claimed is not None:
            idempotency.complete(conn, record_id=claimed, status=200, body=response)
        return Submitted(200, response)

    try:
        return await db.write(accept)
    except PostroomError as error:
        if idempotency_key is None or error.status >= 500 or isinstance(error, idempotency.CLAIM_ERRORS):
            raise
        status, error_body = error.status, error.body()

        def refuse(conn: Connection) -> None:  # a 4xx answers this payload for good: replay it
            claimed = claim(conn)
            if isinstance(claimed, int):
                idempotency.complete(conn, record_id=claimed, status=status, body=error_body)

        try:
            await db.write(refuse)
        except idempotency.CLAIM_ERRORS:
            pass  # the key was claimed meanwhile: this request still gets its own answer
        raise
