"""How each message arrived (``rest`` or ``esmtp``), for the ``recv_method`` of its events.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Messages accepted before this revision all came through the API.
    op.add_column("messages", sa.Column("recv_method", sa.String(length=8), nullable=False, server_default="rest"))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("recv_method")
