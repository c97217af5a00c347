"""Migrations produce exactly ``sync.state.metadata``; open_state migrates or refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, Table, create_engine, inspect

from crm_handoff.errors import ConfigError
from sync.cli import main
from sync.migrations import BASELINE, config, current, head, transaction, upgrade
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
    with engine.begin() as conn:
        cfg = config(conn)
        from alembic import command

        command.upgrade(cfg, BASELINE)  # the tables 0.1.0 created, exactly
        conn.exec_driver_sql("DROP TABLE alembic_version")  # ... which recorded no version
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
    assert main(["db", "upgrade"]) == 75  # the environment's (EX_TEMPFAIL): run again once it answers
    err = capsys.readouterr().err
    assert err.startswith("error: HANDOFF_STATE_URL: cannot use the state database") and err.count("\n") == 1
    assert "s3cret-pw" not in err


def test_throwaway_in_memory_store_still_creates_its_schema():
    store = StateStore("sqlite://")
    store.create_schema()
    assert "runs" in inspect(store.engine).get_table_names()
    store.close()


# --- databases an older crm-handoff left half-migrated (pysqlite committed each DDL) ------
ALEMBIC_VERSION = (
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
)
LATER = {  # tables later revisions add
    "leases": "0002", "people": "0003", "to_evaluate": "0005", "outcomes": "0006", "webhook_deliveries": "0007",
    "notifications": "0008",
}  # fmt: skip
FIRST_TABLES = [t.name for t in metadata.sorted_tables if t.name not in LATER]


def _as_0001(name: str) -> Table:
    """Table ``name`` as revision 0001 created it (without what later revisions added)."""
    t = metadata.tables[name]
    if name != "queue":
        return t
    return Table(name, MetaData(), *[c._copy() for c in t.columns if c.name != "valid_until"])  # 0005


def _half_created(url: str, tables: list[str]) -> None:
    """A first migration killed after creating ``tables``: alembic_version exists, empty."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(ALEMBIC_VERSION)
        for name in tables:
            _as_0001(name).create(conn)
    engine.dispose()


def _assert_at_head(state: StateStore) -> None:
    assert current(state.engine) == head()
    with state.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], diff


@pytest.mark.parametrize(
    "made",
    [
        ["activities"],  # the report: every later run said "table activities already exists"
        FIRST_TABLES[:5],
        [
            t for t in FIRST_TABLES if t not in ("stage_history", "watermarks")
        ],  # runs exists: once taken for 0001
    ],
    ids=["first-table", "five-tables", "all-but-two"],
)
def test_half_created_database_is_created_on_the_next_run(state_url, made):
    _half_created(state_url, made)
    state = open_state(_settings(state_url, handoff_auto_migrate=False))  # creating needs no opt-in
    try:
        _assert_at_head(state)
    finally:
        state.close()


def test_half_created_database_read_only_says_what_to_do(state_url, monkeypatch, capsys):
    _half_created(state_url, [t for t in FIRST_TABLES if t != "watermarks"])  # runs exists: not new
    monkeypatch.setenv("HANDOFF_STATE_URL", state_url)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # (the test server's password is "handoff": the error masks it)
    assert (
        err.startswith("error: the state database schema is only half-created: run `")
        and "db upgrade`" in err
    )
    assert main(["db", "upgrade"]) == 0
    assert f"upgraded empty -> {head()}" in capsys.readouterr().out
    assert main(["status"]) == 0


def _half_applied_0003(url: str, people_rows: int = 0) -> None:
    """An upgrade from 0002 killed inside 0003: people and its index made, watermarks not
    yet altered, the batch copy of watermarks left behind; alembic_version still 0002."""
    engine = create_engine(url)
    with transaction(engine) as conn:
        command.upgrade(config(conn), "0002")
        metadata.tables["people"].create(conn)
        conn.exec_driver_sql("CREATE TABLE _alembic_tmp_watermarks (crm VARCHAR(20) NOT NULL)")
        for i in range(people_rows):
            conn.execute(
                metadata.tables["people"].insert(),
                {
                    "crm": "hubspot",
                    "id": str(i),
                    "object_type": "contact",
                    "record": {},
                    "modified_at": datetime.now(UTC),
                },
            )
    engine.dispose()


def test_half_applied_revision_is_repaired_and_migrated(state_url, monkeypatch, capsys):
    _half_applied_0003(state_url)
    monkeypatch.setenv("HANDOFF_STATE_URL", state_url)
    monkeypatch.setenv("HANDOFF_AUTO_MIGRATE", "false")
    assert main(["status"]) == 2
    assert "behind (revision 0002" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert f"upgraded 0002 -> {head()}" in capsys.readouterr().out
    state = open_state(_settings(state_url))
    try:
        _assert_at_head(state)
        assert not [t for t in inspect(state.engine).get_table_names() if t.startswith("_alembic_tmp")]
    finally:
        state.close()


def test_half_applied_revision_holding_rows_is_refused_in_one_line(state_url, monkeypatch, capsys):
    _half_applied_0003(state_url, people_rows=2)
    monkeypatch.setenv("HANDOFF_STATE_URL", state_url)
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: the state database is half-migrated and cannot be repaired safely: "
        "table people of the half-applied revision 0003 already holds rows; restore it from a backup"
    )
    assert main(["sync", "--once"]) == 2  # a worker says the same, and changes nothing
    assert "half-migrated" in capsys.readouterr().err
    engine = create_engine(state_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM people").scalar() == 2
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0002"
    engine.dispose()


def test_the_store_keeps_its_own_transactions_after_a_migration(tmp_path):
    """The migration's driver autocommit (for SQLite's transactional DDL) ends with it."""
    state = open_state(_settings(f"sqlite:///{tmp_path / 's.db'}"))
    try:
        with state.engine.connect() as conn:
            assert conn.connection.driver_connection.isolation_level == ""  # pysqlite's default
        with pytest.raises(RuntimeError), state.batch():
            state.set_watermark("hubspot", "contacts", "w1")
            raise RuntimeError("rolled back")
        assert state.watermark("hubspot", "contacts") is None
    finally:
        state.close()


def test_an_index_the_dba_added_does_not_block_an_upgrade(state_url):
    engine = create_engine(state_url)
    with transaction(engine) as conn:
        command.upgrade(config(conn), "0002")
        conn.exec_driver_sql("CREATE INDEX dba_ledger_status ON ledger (status)")
    assert upgrade(engine) == ("0002", head())
    assert "dba_ledger_status" in {ix["name"] for ix in inspect(engine).get_indexes("ledger")}
    engine.dispose()


def test_tables_matching_no_revision_are_refused_in_one_line(state_url, monkeypatch, capsys):
    engine = create_engine(state_url)
    with transaction(engine) as conn:
        command.upgrade(config(conn), "0001")
        metadata.tables["people"].create(conn)  # 0003's table without 0002's leases
    engine.dispose()
    monkeypatch.setenv("HANDOFF_STATE_URL", state_url)
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be repaired safely: its tables match no revision" in err
    assert "restore it from a backup" in err
