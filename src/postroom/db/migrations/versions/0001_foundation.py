"""Foundation: teams, projects, API keys, failed authentications and IP blocks.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postroom.models.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer),
        sa.Column("team_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("emoji", sa.String(16), nullable=True),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_projects_team_id_teams", ondelete="CASCADE"),
    )
    op.create_index("ix_projects_team_id", "projects", ["team_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("permission", sa.String(16), nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("display_prefix", sa.String(12), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("allowed_ips", sa.Text, nullable=True),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("rotated_from_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("last_used_at", UTCDateTime, nullable=True),
        sa.Column("last_used_ip", sa.String(45), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_api_keys_team_id_teams", ondelete="CASCADE"),
        sa.UniqueConstraint("digest", name="uq_api_keys_digest"),
    )
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])
    op.create_table(
        "auth_failures",
        sa.Column("id", sa.Integer),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("key_prefix", sa.String(12), nullable=True),
        sa.Column("api_key_id", sa.String(40), nullable=True),
        sa.Column("team_id", sa.Integer, nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("counts_toward_lockout", sa.Boolean, nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("user_agent", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_auth_failures"),
    )
    op.create_index("ix_auth_failures_ip_occurred_at", "auth_failures", ["ip", "occurred_at"])
    op.create_index("ix_auth_failures_occurred_at", "auth_failures", ["occurred_at"])
    op.create_table(
        "auth_blocks",
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("blocked_until", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("ip", name="pk_auth_blocks"),
    )


def downgrade() -> None:
    op.drop_table("auth_blocks")
    op.drop_index("ix_auth_failures_occurred_at", "auth_failures")
    op.drop_index("ix_auth_failures_ip_occurred_at", "auth_failures")
    op.drop_table("auth_failures")
    op.drop_index("ix_api_keys_team_id", "api_keys")
    op.drop_table("api_keys")
    op.drop_index("ix_projects_team_id", "projects")
    op.drop_table("projects")
    op.drop_table("teams")
