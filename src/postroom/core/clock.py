"""Time, in one place: every rule that depends on time takes ``now`` from here or from its caller."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def iso_resource(moment: datetime) -> str:
    """Resource timestamps as Lettr writes them: ``2024-01-15T10:30:00+00:00``."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def iso_event(moment: datetime) -> str:
    """Event and health timestamps as Lettr writes them: ``2024-01-15T10:31:00.000Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
