"""Audience: contacts, the lists and topics they belong to, the team's typed properties, and saved segments."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from postroom.models.types import UTCDateTime, metadata

audience_lists = Table(
    "audience_lists",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("team_id", "name"),
)
"""A named list of contacts; the name is unique within the team."""

contacts = Table(
    "contacts",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("properties", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("team_id", "email"),
    Index("ix_contacts_team_id_status_id", "team_id", "status", "id"),
    Index("ix_contacts_team_id_id", "team_id", "id"),
)
"""One recipient of the team's audience. ``email`` is stored lower-case; ``properties`` is a JSON object of
property name → string value (only names the team defined). ``status``: subscribed, unsubscribed, bounced,
complained or unverified; bounced and complained follow the suppression list."""

contact_lists = Table(
    "contact_lists",
    metadata,
    Column("list_id", String(48), ForeignKey("audience_lists.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", String(48), ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_contact_lists_contact_id", "contact_id"),
)
"""Membership of a contact in a list (primary key list first: a list's members are one index range)."""

topics = Table(
    "topics",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=True),
    Column("default_subscription", String(8), nullable=False),
    Column("visibility", String(8), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
"""A subject contacts subscribe to. ``default_subscription`` ``opt_out`` subscribes every new contact."""

contact_topics = Table(
    "contact_topics",
    metadata,
    Column("topic_id", String(48), ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", String(48), ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_contact_topics_contact_id", "contact_id"),
)
"""A contact subscribed to a topic; no row means not subscribed."""

audience_properties = Table(
    "audience_properties",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("type", String(8), nullable=False),
    Column("fallback_value", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("team_id", "name"),
)
"""A property the team defined for its contacts; ``type`` (string, number, boolean, date, json) is immutable."""

segments = Table(
    "segments",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("list_id", String(48), ForeignKey("audience_lists.id", ondelete="SET NULL"), nullable=True),
    Column("condition_groups", JSON, nullable=False),
    Column("cached_contacts_count", Integer, nullable=True),
    Column("count_stale", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
"""A saved audience query: ``condition_groups`` is ``[{"conditions": [{"field", "operator", "value"}]}]``.
``count_stale`` is set whenever the team's contacts change, and the count is recomputed before it is shown."""
