"""Templates: folders, templates and their versions, all scoped to a team and one of its projects.

Every content change is a new ``template_versions`` row; ``templates.active_version`` names the version that
sends use unless they pin another one. Ids are integers because the Lettr contract types them as ints.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from postroom.models.types import UTCDateTime, metadata

folders = Table(
    "folders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("is_default", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_folders_team_id_project_id", "team_id", "project_id"),
)
"""Read-only over the API; every project gets one default folder per purpose."""

templates = Table(
    "templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("folder_id", Integer, ForeignKey("folders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("slug", String(255), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("active_version", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("project_id", "slug"),
    Index("ix_templates_team_id_project_id", "team_id", "project_id"),
)

template_versions = Table(
    "template_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("template_id", Integer, ForeignKey("templates.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("html", Text, nullable=True),
    Column("json", Text, nullable=True),
    Column("subject", Text, nullable=True),
    Column("merge_tags", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("template_id", "version"),
)
"""Immutable once written. ``merge_tags`` is the JSON list extracted when the version was saved."""
