"""What became of each handoff: task state, first touch, the rep's outcome, the SLA.

Handoffs made before this revision get a row each, open and with no SLA (``sla = 'none'``):
no deadline is applied to them after the fact, so upgrading never reassigns old work.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("rep_email", sa.String(length=320), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("sla", sa.String(length=8), nullable=False),
        sa.Column("first_touch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_touch_kind", sa.String(length=20), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reassignments", sa.Integer(), nullable=False),
        sa.Column("next_key", sa.String(length=80), nullable=True),
        sa.Column("gave_back", sa.Boolean(), nullable=False),
        sa.Column("late", sa.Text(), nullable=True),
        sa.Column("written", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("outcomes") as batch_op:
        batch_op.create_index("ix_outcomes_person_key", ["person_key"], unique=False)
        batch_op.create_index("ix_outcomes_rep_email", ["rep_email"], unique=False)
        batch_op.create_index("ix_outcomes_state", ["state"], unique=False)
    op.execute(
        "INSERT INTO outcomes (key, person_key, rep_email, assigned_at, state, sla, reassignments, gave_back, updated_at) "
        "SELECT key, MIN(person_key), MIN(rep_email), MIN(COALESCE(confirmed_at, planned_at)), 'open', 'none', 0, FALSE, "
        "MIN(COALESCE(confirmed_at, planned_at)) FROM ledger WHERE status = 'done' GROUP BY key"
    )


def downgrade() -> None:
    with op.batch_alter_table("outcomes") as batch_op:
        batch_op.drop_index("ix_outcomes_state")
        batch_op.drop_index("ix_outcomes_rep_email")
        batch_op.drop_index("ix_outcomes_person_key")
    op.drop_table("outcomes")
