"""Sandbox keys and the local inbox: a ``sandbox`` flag on keys and messages, room for the ``lttr_sandbox_``
display prefix, and the table of captured messages.

Revision ID: 0016
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postroom.models.types import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _resize_prefixes(old: int, new: int) -> None:
    """Key prefixes grow to 20 characters (``lttr_sandbox_`` + 7). SQLite does not enforce a VARCHAR length, and
    rebuilding ``api_keys`` there would cascade into the tables that reference it, so only PostgreSQL alters."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column("api_keys", "display_prefix", existing_type=sa.String(old), type_=sa.String(new))
    op.alter_column("auth_failures", "key_prefix", existing_type=sa.String(old), type_=sa.String(new))


def upgrade() -> None:
    for table in ("api_keys", "messages"):
        op.add_column(table, sa.Column("sandbox", sa.Boolean(), nullable=False, server_default=sa.false()))
    _resize_prefixes(12, 20)
    op.create_table(
        "inbox_messages",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("rcpt_to", sa.String(254), nullable=False),
        sa.Column("envelope_from", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(998), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("captured_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_inbox_messages_team_id_teams", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name="fk_inbox_messages_message_id_messages", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_inbox_messages"),
    )
    op.create_index("ix_inbox_messages_message_id", "inbox_messages", ["message_id"])
    op.create_index("ix_inbox_messages_team_id_captured_at", "inbox_messages", ["team_id", "captured_at"])


def downgrade() -> None:
    op.drop_table("inbox_messages")
    _resize_prefixes(20, 12)
    for table in ("messages", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("sandbox")
