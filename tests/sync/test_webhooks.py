"""HubSpot webhook deliveries at the worker's HTTP server: the v3 signature checked before
anything else (401, nothing stored), each event stored once by its eventId (a replay or a
duplicate stores nothing new), the answer given only after the events are in the state."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from connectors.hubspot.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, decode_uri, sign
from crm_handoff.errors import ConfigError
from sync.metrics import Metrics
from sync.report_http import ReportServer
from sync.settings import load_settings
from sync.state import StateStore
from sync.webhooks import PATH, Receiver

SECRET = "app-client-secret-1234"
PUBLIC = "https://handoff.example.com/webhooks/hubspot"


@pytest.fixture
def state(state_url):
    s = StateStore(state_url)
    s.create_schema()
    yield s
    s.close()


@pytest.fixture
def server(state):
    stored: list[int] = []
    receiver = Receiver(state, SECRET, PUBLIC, on_stored=lambda: stored.append(1))
    srv = ReportServer(lambda: "<html></html>", Metrics(), lambda: (True, {}), "127.0.0.1", 0, receiver)
    srv.start()
    srv.stored = stored  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def _event(event_id: int, object_id: int = 501, kind: str = "contact.propertyChange", **kw) -> dict:
    body = {
        "eventId": event_id,
        "subscriptionId": 77,
        "portalId": 12345,
        "appId": 999,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "FORM",
    }
    if kind.endswith("propertyChange"):
        body |= {"propertyName": "recent_conversion_date", "propertyValue": "1764720000000"}
    return body | kw


def _post(server, events, secret=SECRET, uri=PUBLIC, at_ms=None, query="", **headers):
    body = json.dumps(events)
    ts = at_ms if at_ms is not None else int(time.time() * 1000)
    full_uri = uri + (f"?{query}" if query else "")
    sent = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, "POST", full_uri, body, ts),
        TIMESTAMP_HEADER: str(ts),
    } | headers
    url = f"http://127.0.0.1:{server.port}{PATH}" + (f"?{query}" if query else "")
    return requests.post(url, data=body.encode(), headers=sent, timeout=5)


def test_a_signed_delivery_is_stored_then_acknowledged(server, state):
    resp = _post(server, [_event(1, 501), _event(2, 502, "contact.creation")])
    assert resp.status_code == 200
    assert resp.json() == {"received": 2, "stored": 2, "duplicates": 0}
    rows = state.webhook_events("hubspot")
    assert [(r["event_id"], r["kind"], r["people"], r["processed_at"]) for r in rows] == [
        ("1", "contact.propertyChange", ["501"], None),
        ("2", "contact.creation", ["502"], None),
    ]
    assert rows[0]["event"]["propertyName"] == "recent_conversion_date"
    assert [p.event_id for p in state.pending_events("hubspot", datetime.now(UTC), 10)] == ["1", "2"]
    assert server.stored == [1]  # the worker is told once per delivery that stored something


@pytest.mark.parametrize(
    "change",
    [
        {"secret": "another-secret"},
        {"uri": "https://evil.example/webhooks/hubspot"},
        {"at_ms": int((time.time() - 301) * 1000)},  # older than 5 minutes
        {"at_ms": int((time.time() + 400) * 1000)},  # from the future
        {SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"},
        {TIMESTAMP_HEADER: "yesterday"},
    ],
    ids=["wrong-secret", "other-uri", "stale", "future", "forged", "bad-timestamp"],
)
def test_a_bad_or_stale_signature_gets_401_and_nothing_is_stored(server, state, change):
    resp = _post(server, [_event(1)], **change)
    assert resp.status_code == 401
    assert state.webhook_events() == []
    assert server.stored == []


def test_a_missing_signature_gets_401(server, state):
    url = f"http://127.0.0.1:{server.port}{PATH}"
    resp = requests.post(url, data=json.dumps([_event(1)]), timeout=5)
    assert resp.status_code == 401
    assert "missing" in resp.json()["error"]
    assert state.webhook_events() == []


def test_a_tampered_body_gets_401(server, state):
    ts = int(time.time() * 1000)
    signed = json.dumps([_event(1, 501)])
    sent = {SIGNATURE_HEADER: sign(SECRET, "POST", PUBLIC, signed, ts), TIMESTAMP_HEADER: str(ts)}
    url = f"http://127.0.0.1:{server.port}{PATH}"
    resp = requests.post(url, data=json.dumps([_event(1, 666)]), headers=sent, timeout=5)
    assert resp.status_code == 401
    assert state.webhook_events() == []


def test_a_replayed_or_duplicated_event_is_stored_once(server, state):
    assert _post(server, [_event(1, 501), _event(2, 502)]).json()["stored"] == 2
    again = _post(server, [_event(2, 502, attemptNumber=1), _event(3, 503)])  # a retry with a new one
    assert again.status_code == 200
    assert again.json() == {"received": 2, "stored": 1, "duplicates": 1}
    assert _post(server, [_event(1, 501)]).json() == {"received": 1, "stored": 0, "duplicates": 1}
    assert [r["event_id"] for r in state.webhook_events()] == ["1", "2", "3"]
    assert len(server.stored) == 2  # a delivery of duplicates only wakes nobody


def test_the_signed_uri_is_the_public_url_with_the_query(server, state):
    assert _post(server, [_event(1)], query="portal=12345&src=a%3Ab").status_code == 200
    assert state.webhook_events()[0]["event_id"] == "1"


def test_hubspot_decodes_these_escapes_before_signing():
    assert decode_uri("https://h.example/a%3Ab%2Fc?x=%40y%21%2A%2c") == "https://h.example/a:b/c?x=@y!*,"
    assert decode_uri("https://h.example/a%20b") == "https://h.example/a%20b"  # not in HubSpot's table


def test_merge_deletion_and_other_objects(server, state):
    merge = _event(10, 501, "contact.merge", mergedObjectIds=[502, 503], newObjectId=501)
    events = [merge, _event(11, 504, "contact.deletion"), _event(12, 9, "company.creation")]
    events.append(_event(13, 505, "object.creation", objectTypeId="0-1"))
    events.append(_event(14, 7, "object.creation", objectTypeId="0-3"))  # a deal
    resp = _post(server, events)
    assert resp.json() == {"received": 5, "stored": 3, "duplicates": 0}
    people = {r["event_id"]: r["people"] for r in state.webhook_events()}
    assert people == {"10": ["501", "502", "503"], "11": ["504"], "13": ["505"]}


def test_a_body_that_is_not_hubspots_gets_400_and_nothing_stored(server, state):
    assert _post(server, {"not": "a list"}).status_code == 400
    assert _post(server, [{"eventId": "x"}]).status_code == 400
    assert state.webhook_events() == []


def test_a_state_that_cannot_be_written_gets_503_so_hubspot_retries(server, state):
    state.engine.dispose()
    with state.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE webhook_deliveries")
    resp = _post(server, [_event(1)])
    assert resp.status_code == 503
    assert server.stored == []


def test_get_is_refused_and_webhooks_off_is_404(state):
    receiver = Receiver(state, SECRET, PUBLIC)
    srv = ReportServer(lambda: "", Metrics(), lambda: (True, {}), "127.0.0.1", 0, receiver).start()
    off = ReportServer(lambda: "", Metrics(), lambda: (True, {}), "127.0.0.1", 0).start()
    try:
        assert requests.get(f"http://127.0.0.1:{srv.port}{PATH}", timeout=5).status_code == 405
        assert requests.post(f"http://127.0.0.1:{off.port}{PATH}", data=b"[]", timeout=5).status_code == 404
    finally:
        srv.stop()
        off.stop()


def test_processed_events_leave_pending_and_are_pruned_later(state):
    from sync.state.webhooks import ReceivedEvent

    now = datetime.now(UTC)
    events = [
        ReceivedEvent(str(i), "contact.creation", str(i), (str(i),), None, {"eventId": i}) for i in (1, 2)
    ]
    assert state.store_events("hubspot", events, now) == 2
    assert state.pending_event_count() == 2
    assert state.pending_events("hubspot", now - timedelta(seconds=1), 10) == []  # received after the bound
    state.events_processed("hubspot", ["1"], now)
    assert [p.event_id for p in state.pending_events("hubspot", now, 10)] == ["2"]
    assert state.pending_event_count() == 1
    assert state.prune_events(now + timedelta(seconds=1)) == 1
    assert [r["event_id"] for r in state.webhook_events()] == ["2"]
    assert state.store_events("hubspot", events[:1], now) == 1  # pruned: its id is forgotten


def test_webhook_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("HUBSPOT_WEBHOOK_URL", PUBLIC)
    with pytest.raises(
        ConfigError, match=r"^setting HUBSPOT_WEBHOOK_URL: webhooks need the app's client secret"
    ):
        load_settings()
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    monkeypatch.setenv("HUBSPOT_WEBHOOK_CLIENT_SECRET_FILE", str(secret_file))
    settings = load_settings()
    assert settings.webhooks_enabled and settings.webhook_secret() == SECRET
    assert SECRET not in repr(settings)
    monkeypatch.setenv("HUBSPOT_WEBHOOK_URL", f"{PUBLIC}?a=1")
    with pytest.raises(ConfigError, match="without credentials, query or fragment"):
        load_settings()
    monkeypatch.delenv("HUBSPOT_WEBHOOK_URL")
    assert not load_settings().webhooks_enabled


def test_a_scheduled_job_waits_for_a_micro_cycle_instead_of_skipping(state, tmp_path):
    import threading

    from sync.settings import Settings
    from sync.worker import WEBHOOK_JOB, Worker

    settings = Settings(handoff_state_url=state.url, handoff_worker_id="me")  # type: ignore[call-arg]
    worker = Worker(settings, state, config=str(tmp_path / "missing"))  # a run fails fast: on the config
    worker._cycle.acquire()  # a micro-cycle is running
    worker._running = WEBHOOK_JOB
    results: list[str] = []
    scheduled = threading.Thread(target=lambda: results.append(worker.run_job("sync")))
    scheduled.start()
    deadline = time.monotonic() + 5
    while not worker._scheduled_waiting.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.run_job(WEBHOOK_JOB) == "skipped"  # no new micro-cycle while the schedule waits
    worker._running = None
    worker._cycle.release()  # the micro-cycle ends
    scheduled.join(timeout=10)
    assert results == ["failed"]  # it ran (and failed on the missing mapping), not skipped
    skipped = [r for r in state.recent_runs(10) if r["status"] == "skipped"]
    assert skipped == []  # neither wait nor the micro-cycle's retry is recorded as a skipped run


def test_a_second_scheduled_job_still_skips_while_a_scheduled_cycle_runs(state, tmp_path):
    from sync.settings import Settings
    from sync.worker import Worker

    settings = Settings(handoff_state_url=state.url, handoff_worker_id="me")  # type: ignore[call-arg]
    worker = Worker(settings, state, config=str(tmp_path / "missing"))
    worker._cycle.acquire()
    worker._running = "sync"
    started = time.monotonic()
    assert worker.run_job("weekly-reset@UTC") == "skipped"
    assert time.monotonic() - started < 1
    worker._cycle.release()
