"""pgqueuer's tables on PostgreSQL (the scale-out job queue); nothing on SQLite.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Any

from alembic import op
from sqlalchemy.util import await_

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _environment() -> Any:
    # Imported here: pgqueuer takes a third of a second to import, and SQLite never needs it.
    from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment

    return QueryBuilderEnvironment()


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # The DDL is several statements; asyncpg runs them as one simple query on the migration's own connection
    # (and so in its transaction).
    raw = bind.connection.driver_connection
    assert raw is not None
    await_(raw.execute(_environment().build_install_query(create_schema=False)))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    raw = bind.connection.driver_connection
    assert raw is not None
    await_(raw.execute(_environment().build_uninstall_query()))
