"""Three `handoff run` replicas on one PostgreSQL: the active one is SIGKILLed in the
middle of a write batch; another takes over within a bounded time and every handoff
exists exactly once, none lost. And the active one paused (SIGSTOP) past its lease's TTL
while another takes over: resumed, it sends no write at all (its lease is fenced)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from connectors.sandbox_server import RunningServer, serve
from sync.lease import Leases, holder_pid
from sync.worker import LEASE
from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep
from tests.integration.test_worker import finished_runs, start_worker, stop, wait_for

TTL, INTERVAL = 3, 1


class KillHolder:
    """WSGI middleware: after the sandbox applies the first matching write, SIGKILL the
    replica that holds the cycle lease (the one that sent it)."""

    def __init__(self, app: Any, state_url: str, method: str, path: str) -> None:
        self.app, self.method, self.path = app, method, path
        self.leases = Leases(create_engine(state_url))
        self.fired = threading.Event()
        self.lock = threading.Lock()
        self.killed: int | None = None
        self.at = 0.0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        hit = environ["REQUEST_METHOD"] == self.method and environ["PATH_INFO"].rstrip("/") == self.path
        body = b"".join(self.app(environ, start_response))  # the sandbox applies the write here
        if hit:
            with self.lock:
                if not self.fired.is_set():
                    holder = self.leases.holder(LEASE)
                    assert holder is not None, "a write without the lease"
                    self.killed = holder_pid(holder[0])
                    assert self.killed is not None
                    os.kill(self.killed, signal.SIGKILL)
                    self.at = time.monotonic()
                    self.fired.set()
        return [body]


def _tails(logs: list[Path], n: int = 8) -> str:
    return "\n".join(line for log in logs for line in log.read_text().splitlines()[-n:])


def _scenario(crms: Any, tmp_path: Path) -> Path:
    """Two reps (capacity 6 in Salesforce, 5 in HubSpot) and 14 sales-ready contacts."""
    cfg = mapping_dir(
        tmp_path,
        reps=[
            rep("dana@northwind.example", "salesforce", 120, 20),
            rep("sam@northwind.example", "hubspot", 100, 20),
        ],
    )
    add_rep_users(crms, "dana@northwind.example")
    add_rep_users(crms, "sam@northwind.example")
    for i in range(14):
        add_ready_contact(crms, i, extra_events=i % 3)
    return cfg


def _task_keys(crms: Any) -> tuple[Counter[str], Counter[str]]:
    """Tasks by handoff key in Salesforce and in HubSpot."""
    sf = Counter(t["Handoff_Key__c"] for t in crms.sf_tasks())
    return sf, Counter(t.properties["crm_handoff_key"] for t in crms.hs_tasks())


def _settled(crms: Any) -> bool:
    sf, hs = _task_keys(crms)
    return len(sf) == 6 and len(hs) == 5


def _assert_every_handoff_once(crms: Any) -> None:
    sf_keys, hs_keys = _task_keys(crms)
    assert max(sf_keys.values()) == 1 and max(hs_keys.values()) == 1  # exactly once
    assert len(sf_keys) == 6 and len(hs_keys) == 5  # none lost: capacity 6 + 5


def _recovered(state_url: str, killed: int | None) -> bool:
    """A survivor's cycle found the killed replica's tasks by key instead of writing them again."""
    others = [
        r["summary"]
        for r in finished_runs(state_url)
        if holder_pid(r["summary"].get("worker", "")) not in (None, killed)
    ]
    return any(s.get("tasks_already_existed", {}).get("hubspot") for s in others)


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _shut_down(procs: list[Any]) -> list[float]:
    """Resume any paused replica, SIGTERM every live one; how long each took to stop."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
    times = []
    for p in procs:
        if p.poll() is None:
            try:
                times.append(stop(p))
            except subprocess.TimeoutExpired:  # never leave a replica behind
                p.kill()
                p.wait(timeout=10)
                times.append(float("inf"))
    return times


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_three_replicas_kill_the_active_one_mid_batch_every_handoff_exactly_once(crms, tmp_path, state_url):
    cfg = _scenario(crms, tmp_path)
    switch = KillHolder(crms.hs, state_url, "POST", "/crm/v3/objects/tasks/batch/create")
    server = serve(switch)
    env = {**crms.env, "HUBSPOT_BASE_URL": server.url}
    extra = {"HANDOFF_LEASE_TTL_SECONDS": str(TTL), "HANDOFF_SYNC_INTERVAL_SECONDS": str(INTERVAL)}
    logs = [tmp_path / f"replica{i}.log" for i in range(3)]
    procs = [start_worker(env, cfg, log, **extra) for log in logs]
    try:
        assert switch.fired.wait(60), f"the kill point was never reached; logs:\n{_tails(logs)}"
        victim = next(p for p in procs if p.pid == switch.killed)
        assert victim.wait(timeout=10) == -signal.SIGKILL

        def took_over() -> float | None:
            return time.monotonic() - switch.at if _recovered(state_url, switch.killed) else None

        takeover = wait_for(took_over, 60, "another replica to finish the interrupted batch", step=0.1)
        assert takeover, _tails(logs)
        assert takeover < TTL + INTERVAL + 10

        wait_for(lambda: _settled(crms), 30, "all eleven handoffs")
    finally:
        times = _shut_down(procs)
        server.stop()
        switch.leases.engine.dispose()

    assert all(p.returncode == 0 for p in procs if p.pid != switch.killed) and max(times) < 10
    _assert_every_handoff_once(crms)
    leads = crms.salesforce().query("SELECT HubSpot_Contact_Id__c FROM Lead")["records"]
    assert len(leads) == len({r["HubSpot_Contact_Id__c"] for r in leads}) == 6

    events = [e for log in logs for e in _events(log)]
    skips = [e for e in events if e["event"] == "run_skipped"]
    assert any(e["reason"].startswith("lease held by") for e in skips)
    assert any(e["event"] == "lease_taken_over" for e in events)
    print(f"takeover after the kill: {takeover:.1f} s; survivors stopped in {max(times):.1f} s")


@dataclass
class Write:
    """One write call a sandbox received, and from which replica."""

    at: datetime
    replica: int
    crm: str
    call: str


def _is_write(crm: str, method: str, path: str) -> bool:
    """A call that changes the CRM (reads by POST: searches, batch reads, Composite GETs)."""
    if crm == "hubspot":
        return method in ("POST", "PATCH", "PUT", "DELETE") and not (
            path.endswith("/search") or "/batch/read" in path or path.startswith(("/oauth", "/__sandbox"))
        )
    return method in ("PATCH", "PUT", "DELETE") or (method == "POST" and "/sobjects" in path)


def _is_task_write(crm: str, path: str) -> bool:
    return ("/tasks/batch/create" in path) if crm == "hubspot" else ("/composite/sobjects/Task" in path)


def _wait_stopped(pid: int, timeout: float = 10) -> None:
    """Wait until every thread of ``pid`` is stopped: SIGSTOP stops a process's threads one
    by one, and a thread still running could receive the reply and send its next batch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [
            (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            for task in Path(f"/proc/{pid}/task").iterdir()
        ]
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"replica {pid} did not stop within {timeout} s")


@dataclass
class PauseOnFirstTaskWrite:
    """Shared by the per-replica fronts: every write call is recorded by replica; the
    replica that sends the first task batch is SIGSTOPped once the sandbox applied it,
    before it gets the reply (the rest of its cycle's writes still to do)."""

    pids: list[int] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    paused: threading.Event = field(default_factory=threading.Event)
    victim: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def front(self, app: Any, replica: int, crm: str) -> Any:
        """A WSGI app in front of ``app`` that only ``replica`` talks to."""

        def call(environ: dict[str, Any], start_response: Any) -> Any:
            method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"].rstrip("/")
            body = b"".join(app(environ, start_response))  # the sandbox applies the write here
            if _is_write(crm, method, path):
                with self.lock:
                    self.writes.append(Write(datetime.now(UTC), replica, crm, f"{method} {path}"))
                    if _is_task_write(crm, path) and not self.paused.is_set():
                        self.victim = replica
                        os.kill(self.pids[replica], signal.SIGSTOP)
                        _wait_stopped(self.pids[replica])
                        self.paused.set()
            return [body]

        return call

    def sent_by(self, replica: int, after: datetime, until: datetime) -> list[Write]:
        """The write calls ``replica`` sent in that interval (both ends included)."""
        return [w for w in self.writes if w.replica == replica and after <= w.at <= until]

    def fronts(self, crms: Any) -> tuple[list[RunningServer], list[dict[str, str]]]:
        """For each of three replicas its own front to each sandbox, and its settings."""
        servers: list[RunningServer] = []
        envs = []
        for i in range(3):
            hs = serve(self.front(crms.hs, i, "hubspot"))
            sf = serve(self.front(crms.sf, i, "salesforce"), tls=True)
            servers += [hs, sf]
            urls = {"HUBSPOT_BASE_URL": hs.url, "SALESFORCE_INSTANCE_URL": sf.url}
            envs.append({**crms.env, **urls, "SALESFORCE_CA_BUNDLE": str(sf.ca_bundle)})
        return servers, envs


def _run_finished(log: Path, run_id: str) -> dict[str, Any] | None:
    done = [e for e in _events(log) if e["event"] == "run_finished" and e["run_id"] == run_id]
    return done[0] if done else None


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_a_replica_paused_past_its_lease_sends_no_write_once_another_took_over(crms, tmp_path, state_url):
    cfg = _scenario(crms, tmp_path)
    switch = PauseOnFirstTaskWrite()
    fronts, envs = switch.fronts(crms)  # each replica has its own: its write calls are told apart
    extra = {"HANDOFF_LEASE_TTL_SECONDS": str(TTL), "HANDOFF_SYNC_INTERVAL_SECONDS": str(INTERVAL)}
    logs = [tmp_path / f"replica{i}.log" for i in range(3)]
    procs = [start_worker(env, cfg, log, **extra) for env, log in zip(envs, logs, strict=True)]
    switch.pids = [p.pid for p in procs]
    try:
        assert switch.paused.wait(60), f"no task batch was ever sent; logs:\n{_tails(logs)}"
        assert switch.victim is not None
        victim, vlog = procs[switch.victim], logs[switch.victim]

        def settled() -> bool:  # another replica took over, finished its cycle and every handoff
            workers = [holder_pid(r["summary"].get("worker", "")) for r in finished_runs(state_url)]
            return _settled(crms) and any(pid != victim.pid for pid in workers)

        wait_for(settled, 60, "another replica to take over and finish every handoff", step=0.2)
        stale_run = [e["run_id"] for e in _events(vlog) if e["event"] == "run_started"][-1]
        resumed = datetime.now(UTC)
        victim.send_signal(signal.SIGCONT)
        finished = wait_for(lambda: _run_finished(vlog, stale_run), 30, "the resumed replica's cycle to end")
    finally:
        times = _shut_down(procs)
        for front in fronts:
            front.stop()

    late = switch.sent_by(switch.victim, resumed, datetime.fromisoformat(finished["timestamp"]))
    assert late == [], f"the replica that lost its lease still wrote after resuming: {late}"
    assert finished["status"] == "stopped"
    events = _events(vlog)
    assert any(e["event"] in ("write_fenced", "lease_lost") for e in events), "it never noticed"
    assert all(p.returncode == 0 for p in procs) and max(times) < 10
    _assert_every_handoff_once(crms)
    before = switch.sent_by(switch.victim, datetime.min.replace(tzinfo=UTC), resumed)
    assert _is_task_write(before[-1].crm, before[-1].call.split(" ", 1)[1])  # paused mid-cycle
    why = [e["reason"] for e in events if e["event"] == "cycle_stopped"]
    print(f"the paused replica sent {len(before)} write calls before the pause, none after it resumed: {why}")
