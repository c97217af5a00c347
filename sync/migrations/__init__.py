"""Schema migrations of the state store (Alembic), and the check ``open_state`` runs.

``upgrade`` brings a database to the newest revision: a brand-new database is created
from the migrations; a database created before migrations existed (tables, no
``alembic_version``) is recognised as the baseline revision first. On PostgreSQL the
upgrade holds an advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

import sync.lease  # noqa: F401  (adds the leases table to sync.state.metadata)
from sync.errors import ConfigError

log = structlog.get_logger("handoff.migrations")

BASELINE = "0001"  # the schema of databases created before migrations existed
_LOCK_KEY = 0x68616E64  # "hand": PostgreSQL advisory lock held while migrating


def config(connection: Connection | None = None) -> Config:
    """Alembic configuration pointing at this package (optionally bound to a connection)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head() -> str:
    """The newest revision this version of crm-handoff knows."""
    return str(ScriptDirectory.from_config(config()).get_current_head())


@lru_cache(maxsize=1)
def known() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory.from_config(config()).walk_revisions())


def _current(conn: Connection) -> str | None:
    rev = MigrationContext.configure(conn).get_current_revision()
    if rev is None and inspect(conn).has_table("runs"):
        return BASELINE
    return rev


def current(engine: Engine) -> str | None:
    """The database's revision; None for an empty database."""
    with engine.connect() as conn:
        return _current(conn)


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every pending migration; returns (revision before, revision after)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        before = _current(conn)
        cfg = config(conn)
        if before == BASELINE and MigrationContext.configure(conn).get_current_revision() is None:
            command.stamp(cfg, BASELINE)
        if before != head():
            command.upgrade(cfg, "head")
    return before, head()


def ensure_schema(engine: Engine, auto_migrate: bool, read_only: bool = False) -> None:
    """Make sure the schema is current: create, migrate, or refuse with one line."""
    rev = current(engine)
    if rev == head():
        return
    if rev is not None and rev not in known():
        raise ConfigError(
            f"the state database is at revision {rev}, newer than this crm-handoff knows ({head()}): "
            "upgrade crm-handoff"
        )
    if rev is None and not read_only:
        upgrade(engine)
        return
    if read_only or not auto_migrate:
        hint = "" if read_only else " (or set HANDOFF_AUTO_MIGRATE=true)"
        raise ConfigError(
            f"the state database schema is behind (revision {rev}, this crm-handoff needs {head()}): "
            f"run `handoff db upgrade`{hint}"
        )
    before, after = upgrade(engine)
    log.info("state_migrated", from_revision=before, to_revision=after)
