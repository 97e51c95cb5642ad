"""Contact status in step with the suppression list.

The suppression list is the source of truth for "this address must not be mailed": when an address is suppressed
(a hard bounce, a spam complaint) every contact with it, in that team, becomes ``bounced`` or ``complained``; when
it is removed from the list those contacts are ``subscribed`` again. New contacts take their status from it too.
This module depends on nothing but the audience queries, so the sending side can call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection

from postroom.audience import queries

STATUS_BY_REASON = {"hard_bounce": "bounced", "spam_complaint": "complained"}
"""A suppression reason → the contact status it means; any other reason reads as a bounce."""


def contact_status(reason: str) -> str:
    return STATUS_BY_REASON.get(reason, "bounced")


def address_suppressed(conn: Connection, *, team_id: int, email: str, reason: str, now: datetime) -> None:
    """The team's contacts with ``email`` take the status the suppression ``reason`` means."""
    queries.set_status_for_email(conn, team_id, email.lower(), contact_status(reason), now)


def address_unsuppressed(conn: Connection, *, team_id: int, email: str, now: datetime) -> None:
    queries.restore_status_for_email(conn, team_id, email.lower(), now)


def status_for_suppressed(conn: Connection, team_id: int, emails: Sequence[str]) -> dict[str, str]:
    """The contact status each suppressed address among ``emails`` (lower-case) must have."""
    reasons = queries.suppression_reasons(conn, team_id, emails)
    return {email: contact_status(reason) for email, reason in reasons.items()}
