"""Initial schema: the state store as of crm-handoff 0.1.0 (before leases).

Revision ID: 0001
Revises: -
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activities",
        sa.Column("crm", sa.String(length=20), nullable=False),
        sa.Column("activity_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("person_id", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("crm", "activity_id"),
    )
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_activities_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_activities_occurred_at"), ["occurred_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_activities_person_id"), ["person_id"], unique=False)

    op.create_table(
        "current_stage",
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=40), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("person_key"),
    )
    op.create_table(
        "field_values",
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("person_key", "field"),
    )
    op.create_table(
        "identities",
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("hubspot_id", sa.String(length=32), nullable=True),
        sa.Column("salesforce_id", sa.String(length=32), nullable=True),
        sa.Column("salesforce_type", sa.String(length=16), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint("person_key"),
        sa.UniqueConstraint("hubspot_id"),
        sa.UniqueConstraint("salesforce_id"),
    )
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identities_email"), ["email"], unique=False)

    op.create_table(
        "ledger",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("crm", sa.String(length=20), nullable=False),
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("rep_email", sa.String(length=320), nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("key", "crm"),
    )
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_person_key"), ["person_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_rep_email"), ["rep_email"], unique=False)

    op.create_table(
        "queue",
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status_written", sa.Text(), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("person_key"),
    )
    op.create_table(
        "record_errors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("crm", sa.String(length=20), nullable=False),
        sa.Column("record", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "crm", "record", name="uq_record_error"),
    )
    with op.batch_alter_table("record_errors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_record_errors_run_id"), ["run_id"], unique=False)

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "stage_history",
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=40), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("person_key", "stage"),
    )
    op.create_table(
        "watermarks",
        sa.Column("crm", sa.String(length=20), nullable=False),
        sa.Column("stream", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("crm", "stream"),
    )


def downgrade() -> None:
    op.drop_table("watermarks")
    op.drop_table("stage_history")
    op.drop_table("runs")
    with op.batch_alter_table("record_errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_record_errors_run_id"))

    op.drop_table("record_errors")
    op.drop_table("queue")
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_rep_email"))
        batch_op.drop_index(batch_op.f("ix_ledger_person_key"))

    op.drop_table("ledger")
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identities_email"))

    op.drop_table("identities")
    op.drop_table("field_values")
    op.drop_table("current_stage")
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activities_person_id"))
        batch_op.drop_index(batch_op.f("ix_activities_occurred_at"))
        batch_op.drop_index(batch_op.f("ix_activities_email"))

    op.drop_table("activities")
