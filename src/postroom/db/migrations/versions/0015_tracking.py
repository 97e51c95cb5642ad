"""Open and click tracking: a tracking domain per sending domain, and each recipient's first human open and click.

Revision ID: 0015
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postroom.models.types import UTCDateTime

revision = "0015"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("domains", sa.Column("tracking_domain", sa.String(length=253), nullable=True))
    op.add_column("domains", sa.Column("tracking_status", sa.String(length=16), nullable=True))
    op.add_column("recipients", sa.Column("opened_at", UTCDateTime(timezone=True), nullable=True))
    op.add_column("recipients", sa.Column("clicked_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("clicked_at")
        batch.drop_column("opened_at")
    with op.batch_alter_table("domains") as batch:
        batch.drop_column("tracking_status")
        batch.drop_column("tracking_domain")
