"""Shared fixtures: ``state_url`` runs a test on SQLite and on PostgreSQL.

The PostgreSQL variant creates a fresh database per test on the server named by
``HANDOFF_TEST_POSTGRES_URL`` (``.ci/run`` starts one) and drops it afterwards. Without
that variable it is skipped - unless ``HANDOFF_REQUIRE_POSTGRES=1``, then it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url

PG_ENV = "HANDOFF_TEST_POSTGRES_URL"


def postgres_admin_url() -> URL | None:
    """The admin URL of the test PostgreSQL server; skip (or fail when required) without one."""
    raw = os.environ.get(PG_ENV)
    if raw:
        return make_url(raw)
    if os.environ.get("HANDOFF_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"HANDOFF_REQUIRE_POSTGRES=1 but {PG_ENV} is not set")
    pytest.skip(f"PostgreSQL tests need {PG_ENV} (as set by .ci/run)")
    return None


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """A CLI run binds structlog to the captured stderr of its test: unbind it afterwards."""
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (URL with password)."""
    admin = postgres_admin_url()
    assert admin is not None
    name = f"handoff_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin.set(database=name).render_as_string(hide_password=False)
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state store URL of one test: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


def state_tables(url: str) -> list[str]:
    """The tables in a state database (none when a SQLite file does not exist)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        return []
    engine = create_engine(url)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()
