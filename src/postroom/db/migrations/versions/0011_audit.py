"""The permission each API key was created with (``api_keys.created_permission``), for the Logs page.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("created_permission", sa.String(length=16), nullable=True))
    # Keys made before this revision: their permission now is the best record of it there is.
    op.execute("UPDATE api_keys SET created_permission = permission")


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("created_permission")
