"""Secrets never reach a log line, an error message or the state store."""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep


def test_tokens_absent_from_logs_errors_and_state(crms, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    add_rep_users(crms, "sam@northwind.example")
    add_ready_contact(crms, 1)
    env = {**os.environ, **crms.env, "HANDOFF_LOG_LEVEL": "debug", "HANDOFF_LOG_FORMAT": "json"}
    ok = subprocess.run(
        [sys.executable, "-m", "sync.cli", "sync", "--once", "--json", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "sync.cli", "sync", "--once", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "HUBSPOT_ACCESS_TOKEN": "wrong-secret-token-123"},
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) >= 1
    state = _dump(crms.env["HANDOFF_STATE_URL"])
    assert "sam@northwind.example" in state  # the dump really holds the state
    for secret in (crms.hs.token, crms.sf.token, "wrong-secret-token-123"):
        assert secret not in ok.stdout + ok.stderr + bad.stdout + bad.stderr
        assert secret not in state


def _dump(url: str) -> str:
    """Every row of every table of the state store, as text."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        text = repr([conn.execute(sa.select(t)).all() for t in meta.sorted_tables])
    engine.dispose()
    return text
