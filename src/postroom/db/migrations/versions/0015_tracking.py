"""Open and click tracking: whether each message asked for it, a tracking domain per sending domain, and each
recipient's first human open and click.

Revision ID: 0015
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postroom.models.types import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Messages accepted before this revision were never tracked.
    op.add_column("messages", sa.Column("open_tracking", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("messages", sa.Column("click_tracking", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("domains", sa.Column("tracking_domain", sa.String(length=253), nullable=True))
    op.add_column("domains", sa.Column("tracking_status", sa.String(length=16), nullable=True))
    op.add_column("recipients", sa.Column("opened_at", UTCDateTime(timezone=True), nullable=True))
    op.add_column("recipients", sa.Column("clicked_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("clicked_at")
        batch.drop_column("opened_at")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("click_tracking")
        batch.drop_column("open_tracking")
    with op.batch_alter_table("domains") as batch:
        batch.drop_column("tracking_status")
        batch.drop_column("tracking_domain")
