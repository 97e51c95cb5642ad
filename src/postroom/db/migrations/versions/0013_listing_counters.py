"""Event counts per team, type and hour (the listings' ``total_count``), and indexes for the listings' filters.

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import postroom.models.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_INDEXES: tuple[tuple[str, list[str | sa.TextClause]], ...] = (
    ("ix_email_events_team_id_occurred_at", ["team_id", "occurred_at"]),
    ("ix_email_events_team_id_type_occurred_at", ["team_id", "type", "occurred_at"]),
    ("ix_email_events_team_id_bounce_class_occurred_at", ["team_id", "bounce_class", "occurred_at"]),
    ("ix_email_events_team_id_lower_rcpt_to", ["team_id", sa.text("lower(rcpt_to)")]),
)


def upgrade() -> None:
    op.create_table(
        "event_counts",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("hour_start", postroom.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_event_counts_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", "type", "hour_start", "shard", name=op.f("pk_event_counts")),
    )
    op.create_index("ix_event_counts_team_id_hour_start", "event_counts", ["team_id", "hour_start"])
    for name, columns in _INDEXES:
        op.create_index(name, "email_events", columns)
    # Every event recorded so far, counted once into shard 0 of its hour.
    if op.get_bind().dialect.name == "postgresql":
        hour = "date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:  # fixed-width UTC text, 2026-11-23 09:27:38.123456
        hour = "substr(occurred_at, 1, 13) || ':00:00.000000'"
    insert = "INSERT INTO event_counts (team_id, type, hour_start, shard, count) "
    backfill = f"SELECT team_id, type, {hour}, 0, count(*) FROM email_events GROUP BY team_id, type, {hour}"  # noqa: S608
    op.execute(insert + backfill)


def downgrade() -> None:
    for name, _ in _INDEXES:
        op.drop_index(name, table_name="email_events")
    op.drop_index("ix_event_counts_team_id_hour_start", table_name="event_counts")
    op.drop_table("event_counts")
