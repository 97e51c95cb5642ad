"""Audience: contacts, lists, topics, properties and segments.

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import postroom.models.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, postroom.models.types.UTCDateTime(timezone=True), nullable=False)


def _team(table: str) -> list[Any]:
    return [
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f(f"fk_{table}_team_id_teams"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def upgrade() -> None:
    op.create_table(
        "audience_lists",
        sa.Column("id", sa.String(length=48), nullable=False),
        *_team("audience_lists"),
        sa.Column("name", sa.String(length=255), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("team_id", "name", name=op.f("uq_audience_lists_team_id_name")),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(length=48), nullable=False),
        *_team("contacts"),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.UniqueConstraint("team_id", "email", name=op.f("uq_contacts_team_id_email")),
    )
    op.create_index("ix_contacts_team_id_status_id", "contacts", ["team_id", "status", "id"])
    op.create_index("ix_contacts_team_id_id", "contacts", ["team_id", "id"])
    op.create_table(
        "contact_lists",
        sa.Column("list_id", sa.String(length=48), nullable=False),
        sa.Column("contact_id", sa.String(length=48), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["audience_lists.id"], name=op.f("fk_contact_lists_list_id_audience_lists"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_contact_lists_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("list_id", "contact_id", name=op.f("pk_contact_lists")),
    )
    op.create_index("ix_contact_lists_contact_id", "contact_lists", ["contact_id"])
    op.create_table(
        "topics",
        sa.Column("id", sa.String(length=48), nullable=False),
        *_team("topics"),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("default_subscription", sa.String(length=8), nullable=False),
        sa.Column("visibility", sa.String(length=8), nullable=False),
        _when("created_at"),
    )
    op.create_index(op.f("ix_topics_team_id"), "topics", ["team_id"])
    op.create_table(
        "contact_topics",
        sa.Column("topic_id", sa.String(length=48), nullable=False),
        sa.Column("contact_id", sa.String(length=48), nullable=False),
        sa.ForeignKeyConstraint(
            ["topic_id"], ["topics.id"], name=op.f("fk_contact_topics_topic_id_topics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_contact_topics_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("topic_id", "contact_id", name=op.f("pk_contact_topics")),
    )
    op.create_index("ix_contact_topics_contact_id", "contact_topics", ["contact_id"])
    op.create_table(
        "audience_properties",
        sa.Column("id", sa.String(length=48), nullable=False),
        *_team("audience_properties"),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("fallback_value", sa.String(length=255), nullable=True),
        _when("created_at"),
        sa.UniqueConstraint("team_id", "name", name=op.f("uq_audience_properties_team_id_name")),
    )
    op.create_table(
        "segments",
        sa.Column("id", sa.String(length=48), nullable=False),
        *_team("segments"),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("list_id", sa.String(length=48), nullable=True),
        sa.Column("condition_groups", sa.JSON(), nullable=False),
        sa.Column("cached_contacts_count", sa.Integer(), nullable=True),
        sa.Column("count_stale", sa.Boolean(), nullable=False),
        _when("created_at"),
        sa.ForeignKeyConstraint(
            ["list_id"], ["audience_lists.id"], name=op.f("fk_segments_list_id_audience_lists"), ondelete="SET NULL"
        ),
    )
    op.create_index(op.f("ix_segments_team_id"), "segments", ["team_id"])


def downgrade() -> None:
    for table in ("segments", "audience_properties", "contact_topics", "topics", "contact_lists", "contacts"):
        op.drop_table(table)
    op.drop_table("audience_lists")
