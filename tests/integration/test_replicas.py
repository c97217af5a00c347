"""Three `handoff run` replicas on one PostgreSQL: the active one is SIGKILLed in the
middle of a write batch; another takes over within a bounded time and every handoff
exists exactly once, none lost."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from connectors.sandbox_server import serve
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


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_three_replicas_kill_the_active_one_mid_batch_every_handoff_exactly_once(crms, tmp_path, state_url):
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
            others = [
                r["summary"]
                for r in finished_runs(state_url)
                if holder_pid(r["summary"].get("worker", "")) not in (None, switch.killed)
            ]  # a survivor's cycle found the victim's tasks by key instead of writing them again
            recovered = [s for s in others if s.get("tasks_already_existed", {}).get("hubspot")]
            return time.monotonic() - switch.at if recovered else None

        takeover = wait_for(took_over, 60, "another replica to finish the interrupted batch", step=0.1)
        assert takeover, _tails(logs)
        assert takeover < TTL + INTERVAL + 10

        def settled() -> bool:
            sf = Counter(t["Handoff_Key__c"] for t in crms.sf_tasks())
            hs = Counter(t.properties["crm_handoff_key"] for t in crms.hs_tasks())
            return len(sf) == 6 and len(hs) == 5

        wait_for(settled, 30, "all eleven handoffs")
    finally:
        survivors = [p for p in procs if p.pid != switch.killed]
        times = [stop(p) for p in survivors if p.poll() is None]
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        server.stop()
        switch.leases.engine.dispose()

    assert all(p.returncode == 0 for p in survivors) and max(times) < 10
    sf_keys = Counter(t["Handoff_Key__c"] for t in crms.sf_tasks())
    hs_keys = Counter(t.properties["crm_handoff_key"] for t in crms.hs_tasks())
    assert max(sf_keys.values()) == 1 and max(hs_keys.values()) == 1  # exactly once
    assert len(sf_keys) == 6 and len(hs_keys) == 5  # none lost: capacity 6 + 5
    leads = crms.salesforce().query("SELECT HubSpot_Contact_Id__c FROM Lead")["records"]
    assert len(leads) == len({r["HubSpot_Contact_Id__c"] for r in leads}) == 6

    events = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    skips = [e for e in events if e["event"] == "run_skipped"]
    assert any(e["reason"].startswith("lease held by") for e in skips)
    assert any(e["event"] == "lease_taken_over" for e in events)
    print(f"takeover after the kill: {takeover:.1f} s; survivors stopped in {max(times):.1f} s")
