"""Small CLI promises: `sandbox serve --config` seeds that mapping's reps; `report`/`status`
name the state they read and refuse an absent one; a killed run does not stay 'running'."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hubspot import HubSpot
from sqlalchemy.engine import make_url

from connectors.hubspot.sandbox import HubSpotStore
from connectors.salesforce.sandbox import SalesforceStore
from connectors.sandbox_server import serve
from sync.cli import main
from sync.state import INTERRUPTED
from tests.conftest import state_tables
from tests.integration.conftest import (
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)

QUIET = {"HANDOFF_LOG_LEVEL": "warning"}


def _serve(box: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync.cli", "sandbox", "serve", "--dir", str(box), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **QUIET},
    )
    assert proc.stdout is not None
    settings = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(5))
    return proc, settings


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def _sandbox_reps(box: Path) -> tuple[set[str], set[str]]:
    """(HubSpot owner emails, Salesforce user names) the sandbox saved."""
    hs = HubSpotStore.load(box / "hubspot.json")
    sf = SalesforceStore.load(box / "salesforce.json")
    return {o["email"] for o in hs.owners()}, {u["Username"] for u in sf.all("User")}


def test_sandbox_serve_seeds_the_reps_of_its_config_and_a_sync_routes_to_them(tmp_path):
    reps = [rep("kim@example.test", "salesforce", 100, 20), rep("lou@example.test", "hubspot", 100, 20)]
    cfg = mapping_dir(tmp_path, reps=reps)
    box = tmp_path / "box"
    proc, settings = _serve(box, "--config", str(cfg))
    try:
        owners = HubSpot(access_token=settings["HUBSPOT_ACCESS_TOKEN"], host=settings["HUBSPOT_BASE_URL"])
        emails = {o.email for o in owners.crm.owners.owners_api.get_page(limit=100).results}
        assert {"kim@example.test", "lou@example.test"} <= emails
        assert "ana.lima@northwind.example" not in emails  # a shipped rep, not in this mapping
        run = subprocess.run(
            [sys.executable, "-m", "sync.cli", "sync", "--once", "--json", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=180,
            env={
                **os.environ,
                **settings,
                **QUIET,
                "HANDOFF_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
            },
        )
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        assert not summary.get("unavailable_reps"), summary.get("unavailable_reps")
        assert summary["handed_off_per_rep"] == {"kim@example.test": 5, "lou@example.test": 5}
    finally:
        _stop(proc)

    # the same data started again with a mapping that has one more rep: that rep is added, once
    more = mapping_dir(tmp_path, reps=[*reps, rep("max@example.test", "salesforce")])
    proc, _ = _serve(box, "--empty", "--config", str(more))
    _stop(proc)
    proc, _ = _serve(box, "--config", str(more))
    _stop(proc)
    owners_saved, users_saved = _sandbox_reps(box)
    for email in ("kim@example.test", "lou@example.test", "max@example.test"):
        assert email in owners_saved and email in users_saved
    hs = HubSpotStore.load(box / "hubspot.json")
    assert len(hs.owners(email="max@example.test")) == 1


def test_sandbox_serve_empty_still_has_the_reps_of_its_config(tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("kim@example.test", "salesforce")])
    proc, _ = _serve(tmp_path / "box", "--empty", "--config", str(cfg))
    _stop(proc)
    owners, users = _sandbox_reps(tmp_path / "box")
    assert owners == {"kim@example.test"}
    assert "kim@example.test" in users and not [u for u in users if u.endswith("@northwind.example")]
    assert not SalesforceStore.load(tmp_path / "box" / "salesforce.json").all("Lead")  # no demo people


def _main(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("HANDOFF_STATE_URL", url)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("command", ["report", "status"])
def test_report_and_status_refuse_an_absent_state_and_create_nothing(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HANDOFF_STATE_URL", raising=False)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([command])  # no state setting: the default file, which does not exist here
    assert code == 2 and out.getvalue() == ""
    assert err.getvalue() == (
        "error: HANDOFF_STATE_URL: no crm-handoff state at sqlite:///handoff-state.db "
        f"({tmp_path / 'handoff-state.db'}): no such file; nothing was read or created "
        "(point HANDOFF_STATE_URL at the state `handoff sync` writes)\n"
    )
    assert list(tmp_path.iterdir()) == []

    other = tmp_path / "other.db"  # a SQLite file, but not crm-handoff's
    other.write_bytes(b"")
    code, out_, err_ = _main(monkeypatch, f"sqlite:///{other}", command, "--json")
    assert code == 2 and out_ == "" and "the file has no crm-handoff tables" in err_
    assert other.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]

    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    code, _, err_ = _main(monkeypatch, f"sqlite:///{junk}", command)
    assert code == 2 and len(err_.splitlines()) == 1 and "not a SQLite database" in err_
    assert junk.read_text() == "not a database"


@pytest.mark.parametrize("command", ["report", "status"])
def test_report_and_status_refuse_an_empty_postgres_database(postgres_url, monkeypatch, command):
    code, out, err = _main(monkeypatch, postgres_url, command)
    assert code == 2 and out == ""
    assert "tables; nothing was read or created" in err and len(err.splitlines()) == 1
    assert state_tables(postgres_url) == []  # nothing created


def test_report_and_status_say_which_state_they_read(crms, tmp_path, monkeypatch):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 40, 20)])
    add_rep_users(crms, "dana@northwind.example")
    add_ready_contact(crms, 1)
    code, _ = sync_json(crms, monkeypatch, cfg)
    assert code == 0
    shown = make_url(crms.env["HANDOFF_STATE_URL"]).render_as_string(hide_password=True)
    for command in ("report", "status"):
        code, out, _ = run_cli(crms, monkeypatch, command)
        assert code == 0 and out.startswith(f"state: {shown}\n"), out
        code, out, _ = run_cli(crms, monkeypatch, command, "--json")
        assert json.loads(out)["state"] == shown
    password = make_url(crms.env["HANDOFF_STATE_URL"]).password
    assert not password or f":{password}@" not in out


class _KillAt:
    """WSGI middleware: SIGKILL the CLI process when its first HubSpot task write arrives."""

    def __init__(self, app: Any) -> None:
        self.app, self.proc, self.fired = app, None, threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"].endswith("/objects/tasks/batch/create") and not self.fired.is_set():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.fired.set()
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        return self.app(environ, start_response)


def _runs(crms, monkeypatch) -> dict[int, dict[str, Any]]:
    code, out, err = run_cli(crms, monkeypatch, "status", "--json")
    assert code == 0, err
    return {r["id"]: r for r in json.loads(out)["runs"]}


def test_a_killed_sync_is_marked_failed_at_the_next_start_a_live_one_is_not(crms, tmp_path, monkeypatch):
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot", 40, 20)])
    add_rep_users(crms, "sam@northwind.example")
    add_ready_contact(crms, 1)
    switch = _KillAt(crms.hs)
    server = serve(switch)
    try:
        switch.proc = subprocess.Popen(  # type: ignore[assignment]
            [sys.executable, "-m", "sync.cli", "sync", "--once", "--config", str(cfg)],
            env={**os.environ, **crms.env, **QUIET, "HUBSPOT_BASE_URL": server.url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert switch.proc.wait(timeout=120) == -signal.SIGKILL  # type: ignore[attr-defined]
    finally:
        server.stop()
    assert switch.fired.is_set()
    (killed,) = _runs(crms, monkeypatch).values()
    assert killed["status"] == "running"

    # another process's run that is still going: a later start must leave it alone
    live = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys
                from datetime import UTC, datetime
                from sync.state import StateStore
                store = StateStore(sys.argv[1])
                print(store.start_run(datetime.now(UTC)), flush=True)
                sys.stdin.read()
                """
            ),
            crms.env["HANDOFF_STATE_URL"],
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout is not None
        live_id = int(live.stdout.readline())
        code, _ = sync_json(crms, monkeypatch, cfg)
        assert code == 0 and len(crms.hs_tasks()) == 1  # the killed run's handoff, completed
        runs = _runs(crms, monkeypatch)
        assert runs[killed["id"]]["status"] == "failed"
        assert runs[killed["id"]]["reason"] == INTERRUPTED
        assert runs[live_id]["status"] == "running"  # alive: not ours to mark
    finally:
        live.kill()
        live.wait(timeout=30)
    code, _ = sync_json(crms, monkeypatch, cfg)
    runs = _runs(crms, monkeypatch)
    assert runs[live_id]["status"] == "failed" and runs[live_id]["reason"] == INTERRUPTED
    assert [r["status"] for r in runs.values()].count("running") == 0
