"""The local inbox: sandbox mail, captured exactly as an MX would have received it, and what the dashboard shows.

A capture is written in the same transaction as the recipient's ``delivery`` event, so a message is in the inbox
exactly when its events say it was delivered. Retention is bounded by age and by a count per team
(``POSTROOM_INBOX_MAX_AGE``, ``POSTROOM_INBOX_MAX_MESSAGES``), enforced by the maintenance job.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import dkim as dkimpy
from sqlalchemy import Connection

from postroom.config import Settings
from postroom.core.ids import new_id
from postroom.domains import service as domains_service
from postroom.errors import NotFound
from postroom.inbox import queries

PAGE_SIZE = 50


class CaptureNotFound(NotFound):
    default_message = "Captured message not found."


@dataclass(frozen=True, slots=True)
class Capture:
    """One captured copy as listed: who it was for, what it was, when."""

    id: str
    message_id: str
    request_id: str
    rcpt_to: str
    envelope_from: str
    from_email: str
    subject: str
    captured_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Capture:
        return cls(
            id=row.id,
            message_id=row.message_id,
            request_id=row.request_id,
            rcpt_to=row.rcpt_to,
            envelope_from=row.envelope_from,
            from_email=row.from_email,
            subject=row.subject,
            captured_at=row.captured_at,
        )


@dataclass(frozen=True, slots=True)
class DkimCheck:
    """The captured signature verified against the sending domain's stored keys: ``pass``, ``fail`` or ``none``."""

    result: str
    detail: str


@dataclass(frozen=True, slots=True)
class CaptureView:
    capture: Capture
    raw: str
    headers: list[tuple[str, str]]
    html: str | None
    text: str | None
    dkim: DkimCheck


def capture_row(
    *, team_id: int, message_id: str, recipient: Any, envelope_from: str, raw: bytes, now: datetime
) -> dict[str, Any]:
    """The inbox row for one recipient's copy of a sandbox message; its subject is the one the copy carries (a
    template's subject is rendered per recipient)."""
    subject = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True).get("Subject", "")
    return {
        "id": new_id("inb"),
        "team_id": team_id,
        "message_id": message_id,
        "recipient_id": recipient.id,
        "rcpt_to": recipient.email,
        "envelope_from": envelope_from,
        "subject": str(subject)[:998],
        "raw": raw,
        "captured_at": now,
    }


def store(conn: Connection, rows: list[dict[str, Any]]) -> None:
    queries.insert_captures(conn, rows)


def list_captures(
    conn: Connection, *, team_id: int, page: int = 1, message_id: str | None = None
) -> tuple[list[Capture], int]:
    """One page of a team's captures (newest first) and how many the team holds."""
    rows = queries.captures_in_team(
        conn, team_id, limit=PAGE_SIZE, offset=(max(page, 1) - 1) * PAGE_SIZE, message_id=message_id
    )
    return [Capture.from_row(row) for row in rows], queries.count_in_team(conn, team_id)


def view_capture(conn: Connection, *, team_id: int, capture_id: str) -> CaptureView:
    """A capture taken apart for display, with its DKIM signature checked."""
    row = queries.capture_in_team(conn, team_id, capture_id)
    if row is None:
        raise CaptureNotFound()
    raw = bytes(row.raw)
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return CaptureView(
        capture=Capture.from_row(row),
        raw=raw.decode("utf-8", "replace"),
        headers=[(name, str(value)) for name, value in parsed.items()],
        html=_body(parsed, "html"),
        text=_body(parsed, "plain"),
        dkim=check_dkim(conn, team_id=team_id, raw=raw),
    )


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def check_dkim(conn: Connection, *, team_id: int, raw: bytes) -> DkimCheck:
    """Verify the message's DKIM signature with the public keys the team's domain publishes (current, next and
    previous selectors), read from the database instead of DNS: a sandbox domain need not be in DNS."""
    parsed = BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
    signature = parsed.get("DKIM-Signature")
    if signature is None:
        return DkimCheck("none", "The message carries no DKIM signature (its domain has no signing key).")
    tags = dict(part.strip().split("=", 1) for part in str(signature).replace("\r\n", "").split(";") if "=" in part)
    domain = "".join(tags.get("d", "").split()).lower()
    sending = domains_service.find_domain(conn, team_id=team_id, name=domain) if domain else None
    if sending is None:
        return DkimCheck("fail", f"The signing domain {domain or '(none)'} is not a domain of this team.")
    published = {
        f"{selector}._domainkey.{sending.domain}.".encode(): record.encode()
        for selector, record in (
            (sending.dkim_selector, sending.dkim_public_key),
            (sending.dkim_next_selector, sending.dkim_next_public_key),
            (sending.dkim_previous_selector, sending.dkim_previous_public_key),
        )
        if selector and record
    }

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return published.get(name.lower())

    selector = "".join(tags.get("s", "").split())
    where = f"d={sending.domain}, s={selector}"
    try:
        verified = dkimpy.verify(raw, dnsfunc=lookup)
    except dkimpy.DKIMException as error:
        return DkimCheck("fail", f"{where}: {error}")
    if verified:
        return DkimCheck("pass", f"{where}: the signature verifies with the domain's published key.")
    return DkimCheck("fail", f"{where}: the signature does not verify with the domain's published key.")


def prune(conn: Connection, *, settings: Settings, now: datetime) -> int:
    """Drop captures older than the configured age, then each team's beyond the configured count."""
    removed = queries.delete_captured_before(conn, now - timedelta(seconds=settings.inbox_max_age_seconds))
    for row in queries.teams_over(conn, settings.inbox_max_messages):
        removed += queries.delete_oldest(conn, row.team_id, settings.inbox_max_messages)
    return removed
