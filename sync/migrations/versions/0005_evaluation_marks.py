"""People marked for evaluation (what activity or time changed, durable across a crash),
and the queue's ``valid_until`` as a column so lapsing scores are found by an index.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "to_evaluate",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("ref", sa.String(length=320), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "ref"),
    )
    with op.batch_alter_table("queue") as batch_op:
        batch_op.add_column(sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_queue_valid_until", ["valid_until"], unique=False)
        batch_op.create_index("ix_queue_order", ["score", "queued_at", "person_key"], unique=False)
    queue = sa.table(
        "queue",
        sa.column("person_key", sa.String()),
        sa.column("snapshot", sa.JSON()),
        sa.column("valid_until", sa.DateTime(timezone=True)),
    )
    conn = op.get_bind()
    for key, snap in conn.execute(sa.select(queue.c.person_key, queue.c.snapshot)).all():
        until = (snap or {}).get("valid_until") if isinstance(snap, dict) else None
        if until:
            try:
                at = datetime.fromisoformat(str(until))
            except ValueError:
                continue
            conn.execute(sa.update(queue).where(queue.c.person_key == key).values(valid_until=at))


def downgrade() -> None:
    with op.batch_alter_table("queue") as batch_op:
        batch_op.drop_index("ix_queue_order")
        batch_op.drop_index("ix_queue_valid_until")
        batch_op.drop_column("valid_until")
    op.drop_table("to_evaluate")
