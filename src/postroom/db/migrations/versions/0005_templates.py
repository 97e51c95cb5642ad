"""Templates, versions and folders.

Existing projects get their default folders here; projects created later get them from
``postroom.teams.service`` (``postroom.templates.service.create_default_folders``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from postroom.models.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The default folders as of this revision (postroom.templates.service.DEFAULT_FOLDERS may change later).
_DEFAULT_FOLDERS = (("General", "transactional"), ("Campaigns", "campaign"))


def upgrade() -> None:
    op.create_table(
        "folders",
        sa.Column("id", sa.Integer),
        sa.Column("team_id", sa.Integer, nullable=False),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_folders"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_folders_team_id_teams", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_folders_project_id_projects", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_folders_team_id_project_id", "folders", ["team_id", "project_id"])
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer),
        sa.Column("team_id", sa.Integer, nullable=False),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("folder_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("slug", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("active_version", sa.Integer, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_templates_team_id_teams", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_templates_project_id_projects", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["folder_id"], ["folders.id"], name="fk_templates_folder_id_folders", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("project_id", "slug", name="uq_templates_project_id_slug"),
    )
    op.create_index("ix_templates_folder_id", "templates", ["folder_id"])
    op.create_index("ix_templates_team_id_project_id", "templates", ["team_id", "project_id"])
    op.create_table(
        "template_versions",
        sa.Column("id", sa.Integer),
        sa.Column("team_id", sa.Integer, nullable=False),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("template_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("html", sa.Text, nullable=True),
        sa.Column("json", sa.Text, nullable=True),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("merge_tags", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_template_versions"),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name="fk_template_versions_team_id_teams", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_template_versions_project_id_projects", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"], ["templates.id"], name="fk_template_versions_template_id_templates", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("template_id", "version", name="uq_template_versions_template_id_version"),
    )
    _default_folders_for_existing_projects()


def _default_folders_for_existing_projects() -> None:
    bind = op.get_bind()
    projects = sa.table("projects", sa.column("id", sa.Integer), sa.column("team_id", sa.Integer))
    folders = sa.table(
        "folders",
        sa.column("team_id", sa.Integer),
        sa.column("project_id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("purpose", sa.String),
        sa.column("is_default", sa.Boolean),
        sa.column("created_at", UTCDateTime),
        sa.column("updated_at", UTCDateTime),
    )
    now = datetime.now(UTC)
    rows = [
        {
            "team_id": project.team_id,
            "project_id": project.id,
            "name": name,
            "purpose": purpose,
            "is_default": True,
            "created_at": now,
            "updated_at": now,
        }
        for project in bind.execute(sa.select(projects.c.id, projects.c.team_id).order_by(projects.c.id))
        for name, purpose in _DEFAULT_FOLDERS
    ]
    if rows:
        bind.execute(folders.insert(), rows)


def downgrade() -> None:
    op.drop_table("template_versions")
    op.drop_index("ix_templates_team_id_project_id", "templates")
    op.drop_index("ix_templates_folder_id", "templates")
    op.drop_table("templates")
    op.drop_index("ix_folders_team_id_project_id", "folders")
    op.drop_table("folders")
