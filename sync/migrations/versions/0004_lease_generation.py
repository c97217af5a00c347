"""Leases carry a generation (fencing token): bumped on every acquisition, checked before
every CRM write, so a replica that lost its lease cannot write.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch_op:
        batch_op.add_column(sa.Column("generation", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch_op:
        batch_op.drop_column("generation")
