"""Schema migrations of the state store (Alembic), and the check ``open_state`` runs.

``upgrade`` brings a database to the newest revision in ONE transaction (every revision
and the ``alembic_version`` update commit together, or nothing does): a kill at any
moment leaves the database as it was. SQLite gets transactional DDL by an explicit
``BEGIN IMMEDIATE`` (pysqlite would commit each DDL statement by itself), which also makes
a second process wait; PostgreSQL's DDL is transactional and an advisory lock makes
replicas starting together migrate once.

A database whose tables are not those of its recorded revision is recognised by its
shape (``sync.migrations.shape``): one created before migrations existed (tables, no
``alembic_version``) is recorded as the revision it matches; one left half-migrated by an
older crm-handoff is repaired when that is safe (the half-made revision's new tables are
empty: they are dropped and the revision runs again) and refused in one line otherwise.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, text

import sync.lease  # noqa: F401  (adds the leases table to sync.state.metadata)
from crm_handoff.errors import ConfigError
from sync.migrations.shape import Plan, plan

log = structlog.get_logger("handoff.migrations")

BASELINE = "0001"  # the schema of databases created before migrations existed
_LOCK_KEY = 0x68616E64  # "hand": PostgreSQL advisory lock held while migrating
KILL_ENV = "HANDOFF_TEST_KILL_AT"  # tests only: SIGKILL after this many writes of a migration
_WRITES = frozenset({"CREATE", "DROP", "ALTER", "INSERT", "UPDATE", "DELETE"})


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
    return frozenset(order())


@lru_cache(maxsize=1)
def order() -> tuple[str, ...]:
    """Every revision, oldest first (the history is linear)."""
    return tuple(reversed([s.revision for s in ScriptDirectory.from_config(config()).walk_revisions()]))


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that DDL cannot escape, holding the migration lock, on ``engine``."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # the driver must not begin (or commit) on its own: we say BEGIN
            conn.execution_options(isolation_level="AUTOCOMMIT")
        with conn.begin():  # its COMMIT/ROLLBACK end the explicit SQLite transaction too
            if sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # takes the write lock: one migrator
            elif conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            _arm_kill_switch(conn)
            yield conn


def _arm_kill_switch(conn: Connection) -> None:
    """Tests only: with HANDOFF_TEST_KILL_AT=N, SIGKILL this process right after the N-th
    write statement (CREATE, DROP, ALTER, INSERT, UPDATE, DELETE) of the migration."""
    raw = os.environ.get(KILL_ENV, "").strip()
    if not raw.isdigit():
        return
    left = [int(raw)]

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.split(None, 1)
        if words and words[0].upper() in _WRITES:
            left[0] -= 1
            if left[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    event.listen(conn, "after_cursor_execute", after)


def _recorded(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current(engine: Engine) -> str | None:
    """The database's revision: the recorded one, else the one its tables match; None for a
    new database, or one whose creation was stopped half-way."""
    with engine.connect() as conn:
        rev = _recorded(conn)
        if rev is not None:
            return rev
        return plan(conn, None).at


def _newer(rev: str) -> ConfigError:
    return ConfigError(
        f"the state database is at revision {rev}, newer than this crm-handoff knows ({head()}): "
        "upgrade crm-handoff"
    )


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every pending migration, atomically; returns (revision before, revision after).

    A half-migrated database is repaired first when that is safe, refused otherwise."""
    with transaction(engine) as conn:
        recorded = _recorded(conn)
        if recorded == head():
            return head(), head()
        if recorded is not None and recorded not in known():
            raise _newer(recorded)
        fix = plan(conn, recorded)
        if fix.problem:
            raise ConfigError(
                f"the state database is half-migrated and cannot be repaired safely: {fix.problem}; "
                "restore it from a backup taken before the failed upgrade"
            )
        cfg = config(conn)
        _repair(conn, cfg, fix, recorded)
        command.upgrade(cfg, "head")
    return fix.at, head()


def _repair(conn: Connection, cfg: Config, fix: Plan, recorded: str | None) -> None:
    """Drop what a stopped migration half-made; record the revision the tables have."""
    quote = conn.dialect.identifier_preparer.quote
    for index in fix.drop_indexes:
        conn.exec_driver_sql(f"DROP INDEX {quote(index)}")
    for table in fix.drop_tables:
        conn.exec_driver_sql(f"DROP TABLE {quote(table)}")
    if fix.partial:
        log.warning("state_repaired", revision=fix.at, dropped=list(fix.partial))
    if fix.at != recorded:
        command.stamp(cfg, fix.at or "base")


def ensure_schema(engine: Engine, auto_migrate: bool, read_only: bool = False) -> None:
    """Make sure the schema is current: create, migrate, or refuse with one line."""
    rev = current(engine)
    if rev == head():
        return
    if rev is not None and rev not in known():
        raise _newer(rev)
    if rev is None and not read_only:  # new, or its creation was stopped: (re)create it
        upgrade(engine)
        return
    if rev is None:  # read-only, and a first run was stopped while creating the schema
        raise ConfigError("the state database schema is only half-created: run `handoff db upgrade`")
    if read_only or not auto_migrate:
        hint = "" if read_only else " (or set HANDOFF_AUTO_MIGRATE=true)"
        raise ConfigError(
            f"the state database schema is behind (revision {rev}, this crm-handoff needs {head()}): "
            f"run `handoff db upgrade`{hint}"
        )
    before, after = upgrade(engine)
    log.info("state_migrated", from_revision=before, to_revision=after)
