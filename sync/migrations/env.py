"""Alembic environment: the target schema is ``sync.state.metadata``.

Run through ``sync.migrations.upgrade`` (``handoff db upgrade``), which passes an open
connection in ``config.attributes["connection"]``; a URL in the config works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import sync.lease  # noqa: F401  (the leases table)
from sync.migrations import transaction
from sync.state import metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=True,  # SQLite alters tables by copy-and-move
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)  # ``upgrade`` opened it with ``transaction``: every revision commits at once
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with transaction(engine) as conn:
        _run(conn)
    engine.dispose()
