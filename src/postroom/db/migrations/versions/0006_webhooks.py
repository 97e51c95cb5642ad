"""Webhooks, their secrets, batches and delivery log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import postroom.models.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, postroom.models.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(length=48), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("url_key", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("event_types", sa.Text(), nullable=True),
        sa.Column("auth_type", sa.String(length=16), nullable=False),
        sa.Column("auth_credentials", sa.Text(), nullable=True),
        sa.Column("signing_secret", sa.Text(), nullable=False),
        sa.Column("previous_signing_secret", sa.Text(), nullable=True),
        _when("previous_secret_expires_at"),
        _when("last_successful_at"),
        _when("last_failure_at"),
        sa.Column("last_status", sa.String(length=16), nullable=True),
        _when("failing_since"),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        _when("flush_at"),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_webhooks_team_id_teams"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
        sa.UniqueConstraint("team_id", "url_key", name=op.f("uq_webhooks_team_id_url_key")),
    )
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhooks_team_id"), ["team_id"], unique=False)

    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(length=48), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("event_name", sa.String(length=48), nullable=False),
        sa.Column("batch_id", sa.String(length=48), nullable=True),
        _when("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_events_webhook_id_webhooks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
    )
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_events_webhook_id_batch_id_id", ["webhook_id", "batch_id", "id"], unique=False
        )

    op.create_table(
        "webhook_batches",
        sa.Column("id", sa.String(length=48), nullable=False),
        sa.Column("webhook_id", sa.String(length=48), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("next_attempt_at"),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _when("delivered_at"),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_batches_webhook_id_webhooks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_batches")),
    )
    with op.batch_alter_table("webhook_batches", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_batches_webhook_id_created_at", ["webhook_id", "created_at"], unique=False)

    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=48), nullable=False),
        sa.Column("webhook_id", sa.String(length=48), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        _when("started_at", nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["webhook_batches.id"],
            name=op.f("fk_webhook_attempts_batch_id_webhook_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_attempts_batch_id"), ["batch_id"], unique=False)

    op.create_table(
        "webhook_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.String(length=48), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        _when("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_webhook_alerts_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_alerts")),
    )
    with op.batch_alter_table("webhook_alerts", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_alerts_team_id_created_at", ["team_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_alerts_team_id_created_at")
    op.drop_table("webhook_alerts")
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_attempts_batch_id"))
    op.drop_table("webhook_attempts")
    with op.batch_alter_table("webhook_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_batches_webhook_id_created_at")
    op.drop_table("webhook_batches")
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_events_webhook_id_batch_id_id")
    op.drop_table("webhook_events")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhooks_team_id"))
    op.drop_table("webhooks")
