"""SIGKILL the real CLI right after every write statement of its schema migration - in
``handoff db upgrade``, in a first ``handoff sync --once``, and while repairing a database
an older crm-handoff left half-migrated - on SQLite and PostgreSQL: the kill leaves the
database exactly as it was, and the next run succeeds.

The kill comes from the test hook HANDOFF_TEST_KILL_AT=N (the process SIGKILLs itself
after the N-th write of the migration). A sweep kills after write 1, then 2, 3, ... until
a run is no longer killed, so every statement, and the moment between the last one and
COMMIT, is a kill point; each run starts from what the killed one left, which must be the
database as it was before, and the run that finally completes must succeed. Each run is a
fork of one helper process that imported ``sync.cli`` once (the ``main`` the console script
calls, in a process of its own): dozens of runs take seconds. One test kills the console
script itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from sync.migrations import KILL_ENV, current, head, upgrade
from sync.state import metadata
from tests.conftest import state_tables
from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep

KILLED = -signal.SIGKILL
ROOT = Path(__file__).resolve().parents[2]

# Imports the CLI and what its commands import; then reads one JSON request a line, forks,
# runs ``sync.cli.main`` in the child with the request's argv and environment (stdout and
# stderr to files), and answers the child's exit code (-9 when it was SIGKILLed).
FORKER = r"""
import json, os, sys
import sync.cli, sync.cycle, sync.live, sync.migrations, sync.report, sync.wiring
import connectors.hubspot.connector, connectors.salesforce.connector
import sqlalchemy.dialects.postgresql.psycopg, sqlalchemy.dialects.sqlite.pysqlite
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.environ.update(req["env"])
        for fd, path in ((1, req["out"]), (2, req["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        code = 70
        try:
            code = sync.cli.main(req["argv"])
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


@dataclass
class Run:
    code: int
    out: str
    err: str


class Cli:
    """Runs of the CLI, each in a fresh process forked from one that imported it."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.tmp = tmp
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORKER],
            env={**os.environ, **env, "HANDOFF_LOG_LEVEL": "warning"},
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, *argv: str, kill_at: int | None = None) -> Run:
        out, err = self.tmp / "out.txt", self.tmp / "err.txt"
        req = {"argv": list(argv), "env": {KILL_ENV: str(kill_at or "")}, "out": str(out), "err": str(err)}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        code = int(self.proc.stdout.readline())
        return Run(code, out.read_text(), err.read_text())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def cli(state_url: str, tmp_path: Path) -> Iterator[Cli]:
    runner = Cli({"HANDOFF_STATE_URL": state_url}, tmp_path)
    yield runner
    runner.close()


def assert_at_head(url: str) -> None:
    """The schema is the newest revision's and exactly the models' (as test_migrations checks)."""
    engine = create_engine(url)
    try:
        assert current(engine) == head()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == [], f"the schema differs from the models: {diff}"
    finally:
        engine.dispose()


def drop_everything(url: str) -> None:
    """Back to an empty database, for the next kill point."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for name in inspect(conn).get_table_names():
                conn.execute(text(f'DROP TABLE "{name}" CASCADE'))
    finally:
        engine.dispose()


def one_line(run: Run) -> bool:
    return run.err.count("\n") <= 1 and "Traceback" not in run.err


def snapshot(url: str) -> dict[str, object]:
    """Every table with its columns and indexes, and the recorded revisions."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        return {}
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            columns, indexes = insp.get_multi_columns(), insp.get_multi_indexes()  # one query each
            shot: dict[str, object] = {
                str(key[1]): (sorted(c["name"] for c in cols), sorted(str(i["name"]) for i in indexes[key]))
                for key, cols in columns.items()
            }
            if "alembic_version" in shot:
                shot["versions"] = sorted(
                    conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
                )
            return shot
    finally:
        engine.dispose()


def sweep(cli: Cli, url: str, *argv: str, points: list[int] | None = None) -> tuple[int, Run]:
    """Kill the command after write 1, 2, 3, ... (or at ``points``), each run starting where
    the killed one left the database, until a run is no longer killed; each kill must leave
    the database exactly as it was. Returns (kill points tried, the first run not killed)."""
    before = snapshot(url)
    for n in points or range(1, 1000):
        run = cli.run(*argv, kill_at=n)
        if run.code != KILLED:
            return n, run
        assert snapshot(url) == before, f"the kill after write {n} left a half-made change"
    return 0, cli.run(*argv)


def writes_of_first_upgrade(url: str) -> int:
    """How many writes migrating a new database takes (then back to a new database)."""
    engine = create_engine(url)
    writes = [0]

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        writes[0] += statement.split(None, 1)[0].upper() in (
            "CREATE",
            "DROP",
            "ALTER",
            "INSERT",
            "UPDATE",
            "DELETE",
        )

    event.listen(engine, "after_cursor_execute", count)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    drop_everything(url)
    return writes[0]


def test_kill_after_every_write_of_db_upgrade_then_upgrade_succeeds(cli, state_url):
    n, run = sweep(cli, state_url, "db", "upgrade")
    assert n > 25, "the migration wrote fewer statements than it should: was every one a kill point?"
    assert run.code == 0 and one_line(run), f"the upgrade after the kill after write {n - 1}: {run.err}"
    assert f"upgraded empty -> {head()}" in run.out
    assert_at_head(state_url)
    again = cli.run("db", "upgrade")
    assert again.code == 0 and f"already at {head()}" in again.out


def test_kill_during_the_first_sync_migration_then_sync_succeeds(crms, state_url, tmp_path):
    cfg = str(mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "hubspot", 120, 20)]))
    add_rep_users(crms, "dana@northwind.example")
    for i in range(3):
        add_ready_contact(crms, i)
    last = writes_of_first_upgrade(state_url)  # after it, only COMMIT is left
    cli = Cli(crms.env, tmp_path)
    try:
        sync = ("sync", "--once", "--json", "--config", cfg)
        for point in (1, last // 2, last):
            killed = cli.run(*sync, kill_at=point)
            assert killed.code == KILLED, f"kill point {point}: {killed.err}"
            assert state_tables(state_url) == [], f"the kill after write {point} left a half-made schema"
        run = cli.run(*sync)
        assert run.code == 0 and one_line(run), run.err
        assert json.loads(run.out)
        assert_at_head(state_url)
        assert len(crms.hs_tasks()) == 3  # and the sync did its work
        again = cli.run(*sync)
        assert again.code == 0, again.err
        assert len(crms.hs_tasks()) == 3
    finally:
        cli.close()


def make_half_created(url: str) -> None:
    """What a kill during the first migration of crm-handoff <= 0.4 left: pysqlite committed
    each CREATE on its own, so alembic_version exists (empty) with the first few tables."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
            for name in ("activities", "current_stage", "field_values"):
                metadata.tables[name].create(conn)
    finally:
        engine.dispose()


def test_kill_after_every_write_of_a_repair_then_upgrade_succeeds(cli, state_url):
    make_half_created(state_url)
    sqlite = state_url.startswith("sqlite")  # where such databases were made; one in 5 on PostgreSQL
    n, run = sweep(cli, state_url, "db", "upgrade", points=None if sqlite else list(range(1, 1000, 5)))
    assert n > 25
    assert run.code == 0 and one_line(run), run.err
    assert_at_head(state_url)


def test_kill_the_console_script_mid_migration(state_url):
    handoff = str(Path(sys.executable).parent / "handoff")
    env = {**os.environ, "HANDOFF_STATE_URL": state_url}
    killed = subprocess.run(
        [handoff, "db", "upgrade"], env={**env, KILL_ENV: "3"}, capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == KILLED, killed.stderr
    assert state_tables(state_url) == []
    rerun = subprocess.run([handoff, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert_at_head(state_url)
