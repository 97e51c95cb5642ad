"""Sending-domain verification, DNS record statuses and DKIM key rotation.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import postroom.models.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NEW_COLUMNS: list[tuple[str, Any]] = [
    ("dkim_status", sa.String(length=16)),
    ("cname_status", sa.String(length=16)),
    ("spf_status", sa.String(length=16)),
    ("dmarc_status", sa.String(length=16)),
    ("verification", sa.Text()),
    ("last_checked_at", postroom.models.types.UTCDateTime(timezone=True)),
    ("dkim_verified_at", postroom.models.types.UTCDateTime(timezone=True)),
    ("warning_since", postroom.models.types.UTCDateTime(timezone=True)),
    ("dkim_next_selector", sa.String(length=63)),
    ("dkim_next_private_key", sa.Text()),
    ("dkim_next_public_key", sa.Text()),
    ("dkim_previous_selector", sa.String(length=63)),
    ("dkim_previous_public_key", sa.Text()),
    ("dkim_previous_retire_at", postroom.models.types.UTCDateTime(timezone=True)),
]


def upgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        for name, type_ in _NEW_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    op.create_table(
        "domain_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("occurred_at", postroom.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_domain_events_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_events")),
    )
    with op.batch_alter_table("domain_events", schema=None) as batch_op:
        batch_op.create_index("ix_domain_events_team_id_occurred_at", ["team_id", "occurred_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("domain_events", schema=None) as batch_op:
        batch_op.drop_index("ix_domain_events_team_id_occurred_at")
    op.drop_table("domain_events")
    with op.batch_alter_table("domains", schema=None) as batch_op:
        for name, _ in reversed(_NEW_COLUMNS):
            batch_op.drop_column(name)
