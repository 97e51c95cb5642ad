"""Contact status in step with the suppression list.

The suppression list is the source of truth for "this address must not be mailed": when an address is suppressed
(a hard bounce, a spam complaint) every contact with it, in that team, becomes ``bounced`` or ``complained``; when
it is removed from the list those contacts are ``subscribed`` again. New contacts take their status from it too.
It sits with the sending side, which suppresses addresses; the audience builds on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select, update

from postroom.models import contacts, suppressions

CHUNK = 500

STATUS_BY_REASON = {"hard_bounce": "bounced", "spam_complaint": "complained"}
"""A suppression reason → the contact status it means; any other reason reads as a bounce."""


def contact_status(reason: str) -> str:
    return STATUS_BY_REASON.get(reason, "bounced")


def address_suppressed(conn: Connection, *, team_id: int, email: str, reason: str, now: datetime) -> None:
    """The team's contacts with ``email`` take the status the suppression ``reason`` means."""
    _set_status_for_email(conn, team_id, email.lower(), contact_status(reason), now)


def address_unsuppressed(conn: Connection, *, team_id: int, email: str, now: datetime) -> None:
    _restore_status_for_email(conn, team_id, email.lower(), now)


def status_for_suppressed(conn: Connection, team_id: int, emails: Sequence[str]) -> dict[str, str]:
    """The contact status each suppressed address among ``emails`` (lower-case) must have."""
    reasons = _suppression_reasons(conn, team_id, emails)
    return {email: contact_status(reason) for email, reason in reasons.items()}


def _set_status_for_email(conn: Connection, team_id: int, email: str, status: str, now: datetime) -> None:
    conn.execute(
        update(contacts)
        .where(contacts.c.team_id == team_id, contacts.c.email == email, contacts.c.status != status)
        .values(status=status, updated_at=now)
    )


def _restore_status_for_email(conn: Connection, team_id: int, email: str, now: datetime) -> None:
    """A contact whose address left the suppression list is subscribed again (if it was bounced or complained)."""
    conn.execute(
        update(contacts)
        .where(
            contacts.c.team_id == team_id,
            contacts.c.email == email,
            contacts.c.status.in_(("bounced", "complained")),
        )
        .values(status="subscribed", updated_at=now)
    )


def _suppression_reasons(conn: Connection, team_id: int, emails: Sequence[str]) -> dict[str, str]:
    """The suppression reason of each address among ``emails`` (lower-case) that the team suppresses."""
    found: dict[str, str] = {}
    listed = list(emails)
    for start in range(0, len(listed), CHUNK):
        chunk = listed[start : start + CHUNK]
        query = select(suppressions.c.email, suppressions.c.reason).where(
            suppressions.c.team_id == team_id, suppressions.c.email.in_(chunk)
        )
        found.update((row.email, row.reason) for row in conn.execute(query))
    return found
