"""Webhook deliveries: each event as received, de-duplicated by the CRM's event id, pending
until a micro-cycle has evaluated the people it names.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("crm", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("people", sa.JSON(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("crm", "event_id"),
    )
    op.create_index(
        "ix_webhook_deliveries_pending", "webhook_deliveries", ["processed_at", "received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_pending", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
