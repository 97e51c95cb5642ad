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
from postroom.emails.validation import parse_send_request
from postroom.errors import PostroomError

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
) -> Submitted:
    """Validate ``body`` (a ``POST /api/emails`` JSON object) and accept it; raises the Lettr errors.

    With an ``idempotency_key`` the key is claimed first in its own transaction, and the outcome (a 2xx or a
    4xx) is stored with the accepted send; a server error releases the key so a retry runs again.
    """
    send = parse_send_request(body)
    record_id: int | None = None
    if idempotency_key is not None:
        key = idempotency_key
        body_fingerprint = idempotency.fingerprint(body)
        now = utcnow()
        claimed = await db.write(
            lambda conn: idempotency.claim(
                conn, team_id=team_id, api_key_id=api_key_id, key=key, fingerprint=body_fingerprint, now=now
            )
        )
        if isinstance(claimed, idempotency.StoredResponse):
            return Submitted(claimed.status, claimed.body, replayed=True)
        record_id = claimed

    def accept(conn: Connection) -> dict[str, Any]:
        accepted = emails_service.accept(
            conn,
            team_id=team_id,
            api_key_id=api_key_id,
            request=send,
            now=utcnow(),
            mail_hostname=mail_hostname,
            recv_method=recv_method,
        )
        response = envelope(
            SEND_MESSAGE,
            {"request_id": accepted.request_id, "accepted": accepted.accepted, "rejected": accepted.rejected},
        )
        if record_id is not None:
            idempotency.complete(conn, record_id=record_id, status=200, body=response)
        return response

    try:
        response = await db.write(accept)
    except BaseException as error:
        if record_id is not None:
            held = record_id
            if isinstance(error, PostroomError) and error.status < 500:  # a 4xx answers this payload: replay it
                status, error_body = error.status, error.body()
                await db.write(lambda conn: idempotency.complete(conn, record_id=held, status=status, body=error_body))
            else:  # a server error or a crash: let the caller's retry run the request again
                await db.write(lambda conn: idempotency.release(conn, record_id=held))
        raise
    return Submitted(200, response)
