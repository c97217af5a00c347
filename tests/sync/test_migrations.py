"""Migrations produce exactly ``sync.state.metadata``; open_state migrates or refuses."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from sync.cli import main
from sync.errors import ConfigError
from sync.migrations import BASELINE, current, head, upgrade
from sync.settings import Settings
from sync.state import StateStore, metadata
from sync.wiring import open_state
from tests.conftest import state_tables


def _settings(url: str, **kw) -> Settings:
    return Settings(handoff_state_url=url, **kw)  # type: ignore[call-arg]


def test_migrations_match_the_metadata_exactly(state_url):
    engine = create_engine(state_url)
    try:
        assert upgrade(engine) == (None, head())
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == [], f"the schema drifted from the migrations: {diff}"
        assert upgrade(engine) == (head(), head())  # idempotent
    finally:
        engine.dispose()


def test_new_database_is_created_by_migrations(state_url):
    state = open_state(_settings(state_url))
    try:
        assert current(state.engine) == head()
        assert "leases" in inspect(state.engine).get_table_names()
    finally:
        state.close()


def _behind(url: str) -> None:
    """A database as crm-handoff 0.1.0 left it: created by create_all, no leases, no version."""
    engine = create_engine(url)
    tables = [t for t in metadata.sorted_tables if t.name not in ("leases", "people")]
    metadata.create_all(engine, tables=tables)
    engine.dispose()


def test_behind_database_is_refused_without_auto_migrate(state_url):
    _behind(state_url)
    with pytest.raises(ConfigError, match=r"schema is behind \(revision 0001.*run `handoff db upgrade`"):
        open_state(_settings(state_url, handoff_auto_migrate=False))
    with pytest.raises(ConfigError, match="behind"):
        open_state(_settings(state_url), read_only=True)  # read-only never migrates
    assert "leases" not in state_tables(state_url)


def test_behind_database_is_migrated_automatically(state_url):
    _behind(state_url)
    state = open_state(_settings(state_url))
    try:
        assert current(state.engine) == head() != BASELINE
        assert "leases" in inspect(state.engine).get_table_names()
    finally:
        state.close()


def test_cli_refuses_in_one_line_then_db_upgrade_fixes_it(state_url, monkeypatch, capsys):
    _behind(state_url)
    monkeypatch.setenv("HANDOFF_STATE_URL", state_url)
    monkeypatch.setenv("HANDOFF_AUTO_MIGRATE", "false")
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: the state database schema is behind")
    assert main(["db", "current"]) == 0
    assert f"revision {BASELINE} (behind head {head()}" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert f"upgraded {BASELINE} -> {head()}" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["status"]) == 0


def test_newer_database_is_refused(state_url):
    state = open_state(_settings(state_url))
    with state.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    state.close()
    with pytest.raises(ConfigError, match="newer than this crm-handoff knows"):
        open_state(_settings(state_url))


def test_unreachable_database_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("HANDOFF_STATE_URL", "postgresql+psycopg://u:s3cret-pw@127.0.0.1:9/none")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: HANDOFF_STATE_URL: cannot use the state database") and err.count("\n") == 1
    assert "s3cret-pw" not in err


def test_throwaway_in_memory_store_still_creates_its_schema():
    store = StateStore("sqlite://")
    store.create_schema()
    assert "runs" in inspect(store.engine).get_table_names()
    store.close()
