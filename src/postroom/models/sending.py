"""Sending: domains, messages, their recipients, events, idempotency records, suppressions, scheduled sends."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

from postroom.models.types import UTCDateTime, metadata

domains = Table(
    "domains",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("domain", String(253), nullable=False),
    Column("status", String(16), nullable=False),
    Column("dkim_selector", String(63), nullable=False),
    # Sealed with the server secret (postroom.core.crypto.SecretBox, purpose "dkim-private-key").
    Column("dkim_private_key", Text, nullable=False),
    Column("dkim_public_key", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # What the last DNS check found (null until the first one): valid / invalid / missing / unverified / ...
    Column("dkim_status", String(16), nullable=True),
    Column("cname_status", String(16), nullable=True),
    Column("spf_status", String(16), nullable=True),
    Column("dmarc_status", String(16), nullable=True),
    Column("verification", Text, nullable=True),  # the last check's full result as JSON
    Column("last_checked_at", UTCDateTime, nullable=True),
    # When DNS last served our DKIM key: only a domain that verified once can have its records "disappear".
    Column("dkim_verified_at", UTCDateTime, nullable=True),
    # Since when a verified domain's DKIM record has been failing; sending stops after the grace period.
    Column("warning_since", UTCDateTime, nullable=True),
    # Key rotation: the next key is published and checked before it signs; the previous one is listed until retired.
    Column("dkim_next_selector", String(63), nullable=True),
    Column("dkim_next_private_key", Text, nullable=True),
    Column("dkim_next_public_key", Text, nullable=True),
    Column("dkim_previous_selector", String(63), nullable=True),
    Column("dkim_previous_public_key", Text, nullable=True),
    Column("dkim_previous_retire_at", UTCDateTime, nullable=True),
    # Open and click tracking links use this host once its CNAME to the public host verifies.
    Column("tracking_domain", String(253), nullable=True),
    Column("tracking_status", String(16), nullable=True),
    UniqueConstraint("team_id", "domain", name="uq_domains_team_id_domain"),
    # A name may be registered (pending) by several teams, but approved for one team at a time.
    Index(
        "uq_domains_approved_domain",
        "domain",
        unique=True,
        sqlite_where=text("status = 'approved'"),
        postgresql_where=text("status = 'approved'"),
    ),
)
"""A team's sending domains. Approval is per team (each has its own DKIM selector and key, so proof is per team);
one name is approved (by DNS proof or by an operator) for at most one team, enforced by a partial unique index."""

domain_events = Table(
    "domain_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("domain", String(253), nullable=False),
    Column("type", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Index("ix_domain_events_team_id_occurred_at", "team_id", "occurred_at"),
)
"""What happened to a team's domains that the team should hear about (verified, failing, suspended, rotated)."""

messages = Table(
    "messages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("request_id", String(32), nullable=False, unique=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", Integer, nullable=False),
    Column("api_key_id", String(40), nullable=True),
    Column("scheduled_id", String(40), nullable=True),
    Column("from_email", String(255), nullable=False),
    Column("from_name", String(255), nullable=True),
    Column("sending_domain", String(253), nullable=False),
    Column("subject", Text, nullable=False),
    Column("message_id_header", String(255), nullable=False),
    Column("tag", String(64), nullable=True),
    Column("content", Text, nullable=False),
    Column("metadata", Text, nullable=True),
    Column("transactional", Boolean, nullable=False),
    Column("msg_size", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("recv_method", String(8), nullable=False, server_default="rest"),
    Column("open_tracking", Boolean, nullable=False, server_default=false()),
    Column("click_tracking", Boolean, nullable=False, server_default=false()),
    Column("sandbox", Boolean, nullable=False, server_default=false()),
    Index("ix_messages_team_id_created_at", "team_id", "created_at"),
    # Bounce intake matches a report to its message by the returned Message-ID when it has no VERP address.
    Index("ix_messages_message_id_header", "message_id_header"),
)
"""``content`` is the validated send request as JSON: everything needed to render the message again, identically.
``recv_method`` is how it arrived, as events report it: ``rest`` (the API) or ``esmtp`` (the SMTP relay).
A ``sandbox`` message was sent with a sandbox key: it is delivered into the local inbox, never to an MX."""

recipients = Table(
    "recipients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(40), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("team_id", Integer, nullable=False),
    Column("email", String(254), nullable=False),
    Column("rcpt_type", String(3), nullable=False),
    Column("domain", String(253), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    # The first human open and click (machine opens and scanner clicks never set them): unique engagement.
    Column("opened_at", UTCDateTime, nullable=True),
    Column("clicked_at", UTCDateTime, nullable=True),
)

email_events = Table(
    "email_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(32), nullable=False, unique=True),
    Column("team_id", Integer, nullable=False),
    Column("message_id", String(40), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("recipient_id", Integer, nullable=False),
    Column("type", String(32), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("rcpt_to", String(254), nullable=False),
    Column("bounce_class", Integer, nullable=True),
    Column("details", Text, nullable=True),
    Index("ix_email_events_team_id_id", "team_id", "id"),
    Index("ix_email_events_team_id_type_id", "team_id", "type", "id"),
    # Counting the partial hours at the edges of a listing's range, and the listings' filters.
    Index("ix_email_events_team_id_occurred_at", "team_id", "occurred_at"),
    Index("ix_email_events_team_id_type_occurred_at", "team_id", "type", "occurred_at"),
    Index("ix_email_events_team_id_bounce_class_occurred_at", "team_id", "bounce_class", "occurred_at"),
    Index("ix_email_events_team_id_lower_rcpt_to", "team_id", text("lower(rcpt_to)")),
)
"""Append-only. ``details`` holds the type's own fields (reason, error_code, num_retries, queue_time …) as JSON."""

event_counts = Table(
    "event_counts",
    metadata,
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("type", String(32), primary_key=True),
    Column("hour_start", UTCDateTime, primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("count", Integer, nullable=False),
    Index("ix_event_counts_team_id_hour_start", "team_id", "hour_start"),
)
"""How many ``email_events`` rows of a team and type occurred in the hour from ``hour_start``: the sum over
``shard`` is exact, kept in the transaction that writes the events. Several shards let concurrent PostgreSQL
transactions count the same hour without waiting for each other's row lock (SQLite uses shard 0 only)."""

work_items = Table(
    "work_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("ref", String(300), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("run_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("lease_token", String(32), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_work_items_status_run_at", "status", "run_at"),
)
"""The outbox: what must still happen. ``ref`` names the object (``msg_…|example.com``); handlers re-load it."""

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("team_id", Integer, nullable=False),
    Column("api_key_id", String(40), nullable=False),
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("response_status", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    UniqueConstraint("team_id", "api_key_id", "key"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(254), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("source", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("team_id", "email"),
)

scheduled_emails = Table(
    "scheduled_emails",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("api_key_id", String(40), nullable=True),
    Column("state", String(16), nullable=False),
    Column("scheduled_at", UTCDateTime, nullable=False),
    Column("content", Text, nullable=False),
    Column("from_email", String(255), nullable=False),
    Column("from_name", String(255), nullable=True),
    Column("subject", Text, nullable=True),
    Column("recipients", Text, nullable=False),
    Column("tag", String(64), nullable=True),
    Column("accepted", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("transmission_id", String(32), nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_scheduled_emails_team_id_scheduled_at", "team_id", "scheduled_at"),
)
