"""HubSpot webhooks into real `handoff run` workers, from the HubSpot sandbox's sender: a
form fill reaches the rep's CRM as a task within seconds through a micro-cycle (the
scheduled cycle runs only at start); a delivery with a bad signature gets 401 and nothing
is stored; a replayed delivery is processed once; a worker killed after acknowledging a
delivery processes it on restart; with 3 replicas behind one URL only the lease holder
writes and every handoff has exactly one task."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine
from werkzeug.wrappers import Request, Response

from connectors.hubspot.sandbox import WebhookSender
from connectors.hubspot.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from connectors.sandbox_server import serve
from sync.lease import Leases
from sync.state import StateStore
from sync.worker import LEASE
from tests.integration.conftest import FIT, add_rep_users, mapping_dir, rep
from tests.integration.test_worker import finished_runs, free_port, start_worker, stop, wait_for

SECRET = "northwind-app-client-secret"
REP = "sam@northwind.example"


def _cfg(crms: Any, tmp_path: Path) -> Path:
    cfg = mapping_dir(tmp_path, reps=[rep(REP, "hubspot", 600, 10)])
    add_rep_users(crms, REP)
    return cfg


def _fit_contact(crms: Any, i: int) -> str:
    """Fit (45 points) with no behaviour yet: a form fill (20) makes them sales-ready."""
    return crms.hs_store.add_contact(
        {"email": f"ana{i}@acme{i}.example", "firstname": f"Ana{i}", "lastname": "Buyer", **FIT}
    )


def _webhook_env(port: int, public: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "HANDOFF_METRICS_PORT": str(port),
        "HANDOFF_METRICS_HOST": "127.0.0.1",
        "HUBSPOT_WEBHOOK_URL": public or f"http://127.0.0.1:{port}/webhooks/hubspot",
        "HUBSPOT_WEBHOOK_CLIENT_SECRET": SECRET,
        "HANDOFF_WEBHOOK_DELAY_SECONDS": "0.2",
        "HANDOFF_WEBHOOK_POLL_SECONDS": "0.5",
        **extra,
    }


def _tasks(crms: Any) -> Counter[str]:
    return Counter(t.properties["crm_handoff_key"] for t in crms.hs_tasks())


def _task_created(crms: Any, key: str) -> datetime | None:
    with crms.hs_store.lock:
        for rec in crms.hs_store.tables["tasks"].records.values():
            if rec.props.get("crm_handoff_key") == key:
                return datetime.fromtimestamp(rec.created / 1000, UTC)
    return None


def _events(url: str) -> list[dict[str, Any]]:
    store = StateStore(url)
    try:
        return store.webhook_events("hubspot")
    finally:
        store.close()


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _post(url: str, events: list[dict[str, Any]], secret: str = SECRET) -> requests.Response:
    body = json.dumps(events)
    ts = int(time.time() * 1000)
    headers = {SIGNATURE_HEADER: sign(secret, "POST", url, body, ts), TIMESTAMP_HEADER: str(ts)}
    return requests.post(url, data=body.encode(), headers=headers, timeout=5)


def test_a_form_fill_reaches_the_rep_within_seconds_through_a_webhook(crms, tmp_path, state_url):
    cfg = _cfg(crms, tmp_path)
    cid = _fit_contact(crms, 1)
    port = free_port()
    public = f"http://127.0.0.1:{port}/webhooks/hubspot"
    env = _webhook_env(port, HANDOFF_SYNC_INTERVAL_SECONDS="3600")  # the schedule: only at start
    proc = start_worker(crms.env, cfg, tmp_path / "worker.log", **env)
    sender = WebhookSender(crms.hs_store, public, SECRET, duplicate_rate=1.0, retry_seconds=(0.2,))
    try:
        wait_for(lambda: finished_runs(state_url), 60, "the first (scheduled) cycle")
        assert _tasks(crms) == Counter()  # fit alone is not sales-ready
        sender.start()
        filled = datetime.now(UTC)
        crms.hs_store.submit_form(cid, "Request a demo")
        created = wait_for(lambda: _task_created(crms, f"hs-{cid}#1"), 30, "the handoff task", step=0.05)
        assert (created - filled).total_seconds() < 15

        bad = _post(public, [{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 9}], "wrong")
        assert bad.status_code == 401
        wait_for(lambda: sender.idle(), 10, "the sender's duplicates")
        replay = sender.events[:1]  # the form fill's event, delivered (twice) already
        assert _post(public, replay).json() == {"received": 1, "stored": 0, "duplicates": 1}
        time.sleep(1.5)  # a micro-cycle the replay would have started
    finally:
        sender.stop()
        stop(proc)
    assert _tasks(crms) == Counter({f"hs-{cid}#1": 1})
    assert len(sender.sent) >= 2 and len({a.duplicate for a in sender.sent}) == 2  # sent twice
    events = _events(state_url)
    assert sorted(int(e["event_id"]) for e in events) == sorted(e["eventId"] for e in sender.events)
    assert all(e["processed_at"] is not None for e in events)
    assert "9" not in {e["object_id"] for e in events}  # the unsigned delivery stored nothing
    runs = [r["summary"] for r in finished_runs(state_url)]
    by_job = Counter(r["job"] for r in runs)
    assert by_job["sync"] == 1 and by_job["webhooks"] >= 1
    assert [r["job"] for r in runs if r["handed_off"]] == ["webhooks"]  # the micro-cycle handed off
    micro = next(r for r in runs if r["handed_off"])
    assert micro["people_pulled"]["hubspot"] == 1 and micro["people_pulled"].get("salesforce", 0) == 0


def test_a_worker_killed_after_acknowledging_processes_the_delivery_on_restart(crms, tmp_path, state_url):
    cfg = _cfg(crms, tmp_path)
    cid = _fit_contact(crms, 2)
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text('version: 1\njobs:\n  yearly: {cron: "0 3 1 1 *"}\n')  # no scheduled cycle now
    port = free_port()
    public = f"http://127.0.0.1:{port}/webhooks/hubspot"
    slow = _webhook_env(port, HANDOFF_SCHEDULE_FILE=str(schedule), HANDOFF_WEBHOOK_DELAY_SECONDS="60")
    first = start_worker(crms.env, cfg, tmp_path / "first.log", **slow)
    sender = WebhookSender(crms.hs_store, public, SECRET, retry_seconds=(0.2,))
    try:
        wait_for(lambda: _healthy(port), 30, "the first worker's HTTP server")
        sender.start()
        crms.hs_store.submit_form(cid, "Request a demo")
        wait_for(lambda: sender.delivered(), 10, "the delivery acknowledged")
        first.send_signal(signal.SIGKILL)  # acknowledged, stored, not yet processed
        first.wait(timeout=10)
        pending = _events(state_url)
        assert [e["processed_at"] for e in pending] == [None] and _tasks(crms) == Counter()

        fast = _webhook_env(port, HANDOFF_SCHEDULE_FILE=str(schedule))
        second = start_worker(crms.env, cfg, tmp_path / "second.log", **fast)
        try:
            wait_for(lambda: _tasks(crms), 60, "the task after the restart")
            wait_for(lambda: all(e["processed_at"] for e in _events(state_url)), 10, "the event processed")
        finally:
            stop(second)
    finally:
        sender.stop()
        if first.poll() is None:
            first.kill()
    assert _tasks(crms) == Counter({f"hs-{cid}#1": 1})
    form_fill = sender.events[0]["eventId"]
    assert sum(form_fill in a.event_ids for a in sender.sent) == 1  # not delivered again: the state kept it
    runs = [r["summary"] for r in finished_runs(state_url)]
    assert [r["job"] for r in runs] and {r["job"] for r in runs} == {"webhooks"}


class RoundRobin:
    """A load balancer in front of the replicas: each delivery to the next one."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = itertools.cycle(ports)
        self.lock = threading.Lock()
        self.server = serve(self)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        with self.lock:
            port = next(self.ports)
        headers = {k: v for k, v in req.headers.items() if k.lower().startswith("x-hubspot")}
        try:
            resp = requests.post(
                f"http://127.0.0.1:{port}{req.path}", data=req.get_data(), headers=headers, timeout=5
            )
            answer = Response(resp.content, resp.status_code, content_type="application/json")
        except requests.RequestException:
            answer = Response("replica down", 502)
        return answer(environ, start_response)


class HolderCheck:
    """WSGI middleware on the HubSpot sandbox: every task or contact write is made while a
    replica holds the lease (the fence lets no other through)."""

    def __init__(self, app: Any, state_url: str) -> None:
        self.app = app
        self.leases = Leases(create_engine(state_url))
        self.writes_without_lease = 0
        self.writes = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if environ["REQUEST_METHOD"] == "POST" and "/batch/" in path and not path.endswith("/batch/read"):
            self.writes += 1
            if self.leases.holder(LEASE) is None:
                self.writes_without_lease += 1
        return self.app(environ, start_response)


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_three_replicas_only_the_lease_holder_writes_and_each_handoff_has_one_task(crms, tmp_path, state_url):
    cfg = _cfg(crms, tmp_path)
    contacts = [_fit_contact(crms, 10 + i) for i in range(6)]
    ports = [free_port() for _ in range(3)]
    balancer = RoundRobin(ports)
    public = f"{balancer.server.url}/webhooks/hubspot"
    crms.hs.stop()
    check = HolderCheck(crms.hs, state_url)
    hs_port = int(crms.env["HUBSPOT_BASE_URL"].rsplit(":", 1)[1])
    crms.hs._running = serve(check, port=hs_port)  # the same sandbox, behind the check
    procs = []
    sender = WebhookSender(crms.hs_store, public, SECRET, duplicate_rate=0.5, retry_seconds=(0.2,), seed=5)
    try:
        for n, port in enumerate(ports):
            env = _webhook_env(
                port, public, HANDOFF_SYNC_INTERVAL_SECONDS="3600", HANDOFF_LEASE_TTL_SECONDS="3"
            )
            procs.append(start_worker(crms.env, cfg, tmp_path / f"replica{n}.log", **env))
        wait_for(lambda: all(_healthy(p) for p in ports), 60, "three replicas")
        wait_for(lambda: finished_runs(state_url), 60, "a first cycle (the others skip: the lease is held)")
        sender.start()
        for cid in contacts:  # form fills a moment apart: several deliveries, several replicas
            crms.hs_store.submit_form(cid, "Request a demo")
            time.sleep(0.3)
        wait_for(lambda: len(_tasks(crms)) == len(contacts), 60, "every handoff's task")
        wait_for(lambda: sender.idle(), 10, "the sender's duplicates")
        time.sleep(1.5)
    finally:
        sender.stop()
        for p in procs:
            stop(p)
        balancer.server.stop()
    tasks = _tasks(crms)
    assert tasks == Counter({f"hs-{cid}#1": 1 for cid in contacts})  # exactly one task each
    assert check.writes > 0 and check.writes_without_lease == 0
    events = _events(state_url)
    assert len(events) == len({e["event_id"] for e in events}) == len(sender.events)
    assert all(e["processed_at"] for e in events)
    runs = [r["summary"] for r in finished_runs(state_url)]
    handing = [r for r in runs if r["handed_off"]]
    assert {r["job"] for r in handing} == {"webhooks"}
    assert sum(r["handed_off"] for r in handing) == len(contacts)


@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)
def test_a_failed_micro_cycle_is_run_again_until_the_task_exists(crms, tmp_path, state_url):
    cfg = _cfg(crms, tmp_path)
    cid = _fit_contact(crms, 3)
    port = free_port()
    public = f"http://127.0.0.1:{port}/webhooks/hubspot"
    env = _webhook_env(port, HANDOFF_SYNC_INTERVAL_SECONDS="3600", HANDOFF_WEBHOOK_DELAY_SECONDS="0")
    proc = start_worker(crms.env, cfg, tmp_path / "worker.log", **env)
    sender = WebhookSender(crms.hs_store, public, SECRET, retry_seconds=(0.2,))
    try:
        wait_for(lambda: finished_runs(state_url), 60, "the first (scheduled) cycle")
        crms.hs.faults.unauthorized = True  # HubSpot refuses every call for a while
        sender.start()
        crms.hs_store.submit_form(cid, "Request a demo")

        def failed() -> list[dict[str, Any]]:
            store = StateStore(state_url)
            try:
                return store.runs_by_status(["failed"], limit=10)
            finally:
                store.close()

        wait_for(failed, 20, "a failed micro-cycle")
        assert _task_created(crms, f"hs-{cid}#1") is None  # (read from the store: the API refuses)
        crms.hs.faults.unauthorized = False
        wait_for(lambda: _tasks(crms), 30, "the task, from a micro-cycle run again")
    finally:
        sender.stop()
        stop(proc)
    assert _tasks(crms) == Counter({f"hs-{cid}#1": 1})
    assert [r["summary"]["job"] for r in finished_runs(state_url) if r["summary"]["handed_off"]] == [
        "webhooks"
    ]


def test_deletion_and_merge_deliveries_reach_the_mirror_and_queue_in_a_micro_cycle(
    crms, tmp_path, state_url, monkeypatch
):
    """A queued contact deleted in HubSpot leaves the mirror and the queue; a merge moves the
    merged contact onto the primary; both through one micro-cycle, no people pass."""
    from mappings.loader import load_mappings
    from sync.cycle import run_cycle
    from sync.metrics import Metrics
    from sync.report_http import ReportServer
    from sync.settings import load_settings
    from sync.webhooks import Receiver
    from sync.wiring import build_engine
    from tests.integration.conftest import add_ready_contact, sync_json

    cfg = mapping_dir(tmp_path, reps=[rep(REP, "hubspot", 10, 10)])  # capacity 1: the others wait
    add_rep_users(crms, REP)
    ready = [add_ready_contact(crms, 20 + i) for i in range(3)]
    primary, merged = _fit_contact(crms, 30), _fit_contact(crms, 31)
    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and first["handed_off"] == 1
    state = StateStore(state_url)
    waiting = {q["person_key"] for q in state.queued()}
    assert len(waiting) == 2
    gone = next(cid for cid in ready if any(cid in key for key in waiting))

    port = free_port()
    public = f"http://127.0.0.1:{port}/webhooks/hubspot"
    server = ReportServer(
        lambda: "", Metrics(), lambda: (True, {}), "127.0.0.1", port, Receiver(state, SECRET, public)
    )
    sender = WebhookSender(crms.hs_store, public, SECRET, retry_seconds=(0.2,))
    server.start()
    sender.start()
    try:
        crms.hs_store.archive_contact(gone)
        crms.hs_store.merge_contacts(primary, merged)
        wait_for(sender.idle, 10, "the deliveries")
    finally:
        sender.stop()
        server.stop()
    assert {e["kind"] for e in state.webhook_events()} == {"contact.deletion", "contact.merge"}

    settings = load_settings(handoff_config=str(cfg))
    engine = build_engine(settings, load_mappings(cfg), state)
    engine.trigger = "webhooks"
    result = run_cycle(engine, datetime.now(UTC))
    assert result.exit_code == 0
    assert result.summary.people_pulled == {"hubspot": 3, "salesforce": 0}  # the three ids the events name
    assert all(e["processed_at"] for e in state.webhook_events())
    assert state.people_by_ids("hubspot", [gone, merged]) == []
    assert [p.id for p in state.people_by_ids("hubspot", [primary])] == [primary]
    assert merged in (state.people_by_ids("hubspot", [primary])[0].values.get("hs_merged_object_ids") or "")
    assert len({q["person_key"] for q in state.queued()}) == 1  # the deleted contact left the queue
    assert not any(gone in q["person_key"] for q in state.queued())
    state.close()


@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)
def test_a_missed_delivery_is_handed_off_by_the_scheduled_cycle(crms, tmp_path, state_url):
    cfg = _cfg(crms, tmp_path)
    cid = _fit_contact(crms, 4)
    port = free_port()
    env = _webhook_env(port, HANDOFF_SYNC_INTERVAL_SECONDS="2")  # webhooks on, but HubSpot sends none
    proc = start_worker(crms.env, cfg, tmp_path / "worker.log", **env)
    try:
        wait_for(lambda: finished_runs(state_url), 60, "the first cycle")
        crms.hs_store.submit_form(cid, "Request a demo")
        wait_for(lambda: _tasks(crms), 30, "the task from a scheduled cycle")
    finally:
        stop(proc)
    assert _tasks(crms) == Counter({f"hs-{cid}#1": 1})
    assert _events(state_url) == []
    runs = [r["summary"] for r in finished_runs(state_url)]
    assert {r["job"] for r in runs} == {"sync"} and sum(r["handed_off"] for r in runs) == 1
