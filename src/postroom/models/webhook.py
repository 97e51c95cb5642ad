"""Webhooks: endpoints, the events waiting for them, the batches sent, every attempt, and alerts for the team."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from postroom.models.types import UTCDateTime, metadata

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("url_key", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("event_types", Text, nullable=True),
    Column("auth_type", String(16), nullable=False),
    Column("auth_credentials", Text, nullable=True),
    Column("signing_secret", Text, nullable=False),
    Column("previous_signing_secret", Text, nullable=True),
    Column("previous_secret_expires_at", UTCDateTime, nullable=True),
    Column("last_successful_at", UTCDateTime, nullable=True),
    Column("last_failure_at", UTCDateTime, nullable=True),
    Column("last_status", String(16), nullable=True),
    Column("failing_since", UTCDateTime, nullable=True),
    Column("disabled_reason", Text, nullable=True),
    Column("flush_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("team_id", "url_key"),
)
"""``event_types`` is a JSON list of canonical names, NULL for every event. ``auth_credentials`` and both signing
secrets are sealed with the server secret. ``url_key`` (SHA-256 of the normalised URL) makes one URL per team
unique without indexing 2 KB strings. ``flush_at`` is when the queued batch-forming work item runs (NULL: none
queued), so event recorders add one only when needed."""

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", String(48), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("team_id", Integer, nullable=False),
    Column("event_id", String(32), nullable=False),
    Column("event_name", String(48), nullable=False),
    Column("batch_id", String(48), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_webhook_events_webhook_id_batch_id_id", "webhook_id", "batch_id", "id"),
)
"""One row per (endpoint, email event) to send; ``batch_id`` NULL means still waiting for a batch."""

webhook_batches = Table(
    "webhook_batches",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("webhook_id", String(48), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("team_id", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_webhook_batches_webhook_id_created_at", "webhook_id", "created_at"),
)
"""A delivery: up to 100 events in one signed POST. ``body`` is kept so every retry and replay sends the same
bytes (with a new signature timestamp). ``status``: pending → retrying → succeeded | failed | cancelled."""

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(48), ForeignKey("webhook_batches.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("webhook_id", String(48), nullable=False),
    Column("team_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("response_excerpt", Text, nullable=True),
    Column("error", Text, nullable=True),
)
"""The delivery log: one row per HTTP attempt (``trigger``: ``schedule`` or ``replay``)."""

webhook_alerts = Table(
    "webhook_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("webhook_id", String(48), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_webhook_alerts_team_id_created_at", "team_id", "created_at"),
)
"""What the team must be told about (an endpoint disabled by a 410 or by five days of failures). Kept after the
webhook is deleted, so the dashboard can still explain what happened."""
