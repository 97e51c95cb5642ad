"""The local inbox: what sandbox keys send is captured here, signed and rendered, instead of being delivered."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, String, Table

from postroom.models.types import UTCDateTime, metadata

inbox_messages = Table(
    "inbox_messages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(40), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("recipient_id", Integer, nullable=False),
    Column("rcpt_to", String(254), nullable=False),
    Column("envelope_from", String(255), nullable=False),
    Column("subject", String(998), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("captured_at", UTCDateTime, nullable=False),
    Index("ix_inbox_messages_team_id_captured_at", "team_id", "captured_at"),
)
"""One row per captured recipient: ``raw`` is the exact message an MX would have received, DKIM signature included."""
