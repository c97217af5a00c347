"""`handoff run` against the sandboxes: a few cycles, /metrics matching the recorded
summaries, JSON logs with a run id, then SIGTERM: it stops within seconds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import DBAPIError

from sync.state import StateStore
from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(env: dict[str, str], cfg: Path, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    """A real ``handoff run`` process; its stderr (JSON logs) goes to ``log``."""
    full = {
        **os.environ,
        **env,
        "HANDOFF_CONFIG": str(cfg),
        "HANDOFF_LOG_FORMAT": "json",
        "HANDOFF_SYNC_INTERVAL_SECONDS": "1",
        "HANDOFF_METRICS_PORT": "0",
        **extra,
    }
    with log.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "sync.cli", "run"], env=full, stdout=err, stderr=err)


def wait_for(predicate, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def finished_runs(url: str) -> list[dict]:
    """Cycles that finished (none while the worker has not created the schema yet)."""
    store = StateStore(url)
    try:
        return store.runs_by_status(["ok", "partial"], limit=1000)
    except DBAPIError:
        return []
    finally:
        store.close()


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> float:
    """SIGTERM and wait; returns how long the process took to exit."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=timeout)
    return time.monotonic() - started


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if not s.name.endswith("_created")
    }


def _expected(runs: list[dict]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    totals: dict[str, Counter[str]] = {k: Counter() for k in ("pulled", "rep", "tasks", "calls")}
    for r in runs:
        s = r["summary"]
        totals["pulled"].update(s["people_pulled"])
        totals["rep"].update(s["handed_off_per_rep"])
        totals["tasks"].update(s["tasks_created"])
        totals["calls"].update(s["api_calls"])
    out = {("handoff_runs_total", (("job", "sync"), ("status", "ok"))): float(len(runs))}
    names = {
        "pulled": ("handoff_records_pulled_total", "crm"),
        "rep": ("handoff_handoffs_total", "rep"),
        "tasks": ("handoff_tasks_created_total", "crm"),
        "calls": ("handoff_api_calls_total", "crm"),
    }
    for key, (name, label) in names.items():
        out |= {(name, ((label, k),)): float(v) for k, v in totals[key].items()}
    return out


def test_worker_runs_cycles_serves_matching_metrics_and_stops_on_sigterm(crms, tmp_path, state_url):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 120, 20)])
    add_rep_users(crms, "dana@northwind.example")
    for i in range(9):
        add_ready_contact(crms, i, extra_events=i % 3)
    port = free_port()
    proc = start_worker(crms.env, cfg, tmp_path / "worker.log", HANDOFF_METRICS_PORT=str(port))
    try:
        wait_for(lambda: len(finished_runs(state_url)) >= 3, 60, "three finished cycles")
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"

        def consistent():  # a cycle may finish between the two reads: retry until stable
            before = finished_runs(state_url)
            scraped = _metrics(port)
            return (before, scraped) if finished_runs(state_url) == before else None

        runs, scraped = wait_for(consistent, 20, "a stable scrape")
        expected = _expected(runs)
        assert {k: scraped.get(k) for k in expected} == expected
        assert scraped[("handoff_handoffs_total", (("rep", "dana@northwind.example"),))] == 6
        assert scraped[("handoff_rep_capacity_used", (("rep", "dana@northwind.example"),))] == 6
        dana = (("outcome", "handoffs"), ("rep", "dana@northwind.example"))  # from the outcome rows
        assert scraped[("handoff_acted_on", dana)] == 6
        assert scraped[("handoff_acted_on", (("outcome", "open"), ("rep", "dana@northwind.example")))] == 6
    finally:
        took = stop(proc)
    assert proc.returncode == 0
    assert took < 10, f"took {took:.1f} s to stop"

    assert len(crms.sf_tasks()) == 6
    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()]
    assert [e["event"] for e in lines if e["event"].startswith("worker_")][-2:] == [
        "worker_stopping",
        "worker_stopped",
    ]
    for event in lines:
        if event["event"] in ("run_started", "run_finished", "cycle_started", "cycle_finished"):
            assert event.get("run_id"), event
    assert all("sandbox-hubspot-token" not in json.dumps(e) for e in lines)

    out = subprocess.run(
        [sys.executable, "-m", "sync.cli", "status", "--json"],
        env={**os.environ, "HANDOFF_STATE_URL": state_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    status = json.loads(out.stdout)
    cycles = [r for r in status["runs"] if r["status"] == "ok"]
    assert len(cycles) >= 3 and all(r["job"] == "sync" and r["handed_off"] is not None for r in cycles)
    assert sum(r["handed_off"] for r in cycles) == 6
    assert all(r["status"] != "running" for r in status["runs"])
