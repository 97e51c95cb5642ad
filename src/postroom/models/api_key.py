"""API keys: only a SHA-256 digest of the key is stored, never the key."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Integer, LargeBinary, String, Table, Text, false

from postroom.models.types import UTCDateTime, metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("permission", String(16), nullable=False),
    Column("created_permission", String(16), nullable=True),  # as created; ``permission`` is what it has now
    Column("digest", LargeBinary(32), nullable=False, unique=True),
    Column("display_prefix", String(20), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("allowed_ips", Text, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("rotated_from_id", String(40), nullable=True),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("last_used_ip", String(45), nullable=True),
    # A sandbox key (``lttr_sandbox_…``): its mail goes to the local inbox, and it may not change anything.
    Column("sandbox", Boolean, nullable=False, server_default=false()),
)
