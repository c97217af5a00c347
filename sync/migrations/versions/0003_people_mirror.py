"""People mirror (the last pulled version of every person); watermarks hold longer values.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("crm", sa.String(length=20), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("object_type", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("crm", "id"),
    )
    with op.batch_alter_table("people") as batch_op:
        batch_op.create_index(batch_op.f("ix_people_email"), ["email"], unique=False)
    with op.batch_alter_table("watermarks") as batch_op:
        batch_op.alter_column(
            "value", existing_type=sa.String(length=64), type_=sa.Text(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("watermarks") as batch_op:
        batch_op.alter_column(
            "value", existing_type=sa.Text(), type_=sa.String(length=64), existing_nullable=False
        )
    with op.batch_alter_table("people") as batch_op:
        batch_op.drop_index(batch_op.f("ix_people_email"))
    op.drop_table("people")
