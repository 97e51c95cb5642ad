"""Domain names are unique per team, not across teams; one name is approved for at most one team.

A team could register another team's domain as pending and so keep its real owner from ever adding it. Now each
team may register a name once (``uq_domains_team_id_domain``) and only one row per name may be ``approved``
(``uq_domains_approved_domain``, a partial unique index on SQLite and PostgreSQL alike). Existing rows were unique
by name, so they satisfy both.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_APPROVED = sa.text("status = 'approved'")


def upgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_constraint("uq_domains_domain", type_="unique")
        batch_op.create_unique_constraint("uq_domains_team_id_domain", ["team_id", "domain"])
    op.create_index(
        "uq_domains_approved_domain",
        "domains",
        ["domain"],
        unique=True,
        sqlite_where=_APPROVED,
        postgresql_where=_APPROVED,
    )


def downgrade() -> None:
    op.drop_index("uq_domains_approved_domain", table_name="domains")
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_constraint("uq_domains_team_id_domain", type_="unique")
        batch_op.create_unique_constraint("uq_domains_domain", ["domain"])
