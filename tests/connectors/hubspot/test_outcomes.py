"""Handoff outcomes read back from HubSpot and tasks closed there, through the official SDK
against the sandbox: task state (completed, open, deleted, outcome picked), touches (calls,
emails, meetings by the rep or someone else, before or after ``since``), closing as
reassigned (twice is one close), the outcome dropdown (created once), and what it costs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings, install
from connectors.hubspot.outcomes import OUTCOME_PROPERTY, install_outcomes
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from crm_handoff.records import TaskClose, TaskRequest

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
OUTCOMES = [("worked", "Worked"), ("not_a_fit", "Not a fit"), ("wrong_rep", "Wrong rep")]
TASK_READ = "POST /crm/v3/objects/tasks/batch/read"
TASK_UPDATE = "POST /crm/v3/objects/tasks/batch/update"


@pytest.fixture
def portal() -> Iterator[tuple[HubSpotSandbox, HubSpotStore, HubSpotConnector]]:
    now = [T0]
    store = HubSpotStore(clock=lambda: now[0])
    box = HubSpotSandbox(store)
    box.start()
    conn = HubSpotConnector(HubSpotSettings.with_token(box.base_url, box.token))
    install(conn)
    install_outcomes(conn, OUTCOMES)
    box.calls.clear()
    yield box, store, conn
    box.stop()


def handoffs(conn: HubSpotConnector, store: HubSpotStore, rep: str, n: int) -> list[str]:
    """``n`` handoff tasks written by the connector, one per new contact; their ids."""
    contacts = [store.add_contact({"email": f"p{i}@acme.example"}) for i in range(n)]
    tasks = [
        TaskRequest(f"k{i}", c, "contact", rep, "Follow up", "Scored 80", date(2026, 11, 3), "high")
        for i, c in enumerate(contacts)
    ]
    results = conn.write_tasks(tasks)
    assert all(r.ok for r in results)
    return [str(r.crm_id) for r in results]


def test_read_tasks_completed_open_deleted_and_outcome(portal):
    box, store, conn = portal
    rep = store.add_owner("rep@northwind.example", "Rita", "Rep")
    done, open_, gone, rejected = handoffs(conn, store, rep, 4)
    store.complete_task(done, at=T0 + timedelta(hours=3))
    store.complete_task(rejected, at=T0 + timedelta(hours=1), outcome="not_a_fit")
    store.archive_object("tasks", gone)
    box.calls.clear()

    states = {s.task_id: s for s in conn.read_tasks([done, open_, gone, rejected, done])}
    assert box.calls == {TASK_READ: 1}
    assert len(states) == 4
    s = states[done]
    assert (s.key, s.status, s.closed, s.completed_at, s.owner_id, s.deleted) == (
        "k0", "COMPLETED", True, T0 + timedelta(hours=3), rep, False
    )  # fmt: skip
    assert s.outcome is None
    s = states[open_]
    assert (s.key, s.status, s.closed, s.completed_at, s.outcome) == ("k1", "NOT_STARTED", False, None, None)
    assert states[gone].deleted and states[gone].key is None and not states[gone].closed
    s = states[rejected]
    assert (s.closed, s.outcome, s.completed_at) == (True, "not_a_fit", T0 + timedelta(hours=1))


def test_completion_time_is_when_it_was_completed_not_its_last_change(portal):
    _box, store, conn = portal
    rep = store.add_owner("rep@northwind.example", "Rita", "Rep")
    (task,) = handoffs(conn, store, rep, 1)
    store.complete_task(task, at=T0 + timedelta(hours=1))
    store.update_object("tasks", task, {"hs_task_subject": "Follow up (done)"}, T0 + timedelta(hours=5))
    (s,) = conn.read_tasks([task])
    assert (s.closed, s.completed_at, s.modified_at) == (
        True,
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=5),
    )


def test_reopened_task_is_open_again_with_no_completion(portal):
    _box, store, conn = portal
    rep = store.add_owner("rep@northwind.example", "Rita", "Rep")
    (task,) = handoffs(conn, store, rep, 1)
    store.complete_task(task, at=T0 + timedelta(hours=1))
    store.complete_task(task, at=T0 + timedelta(hours=2), status="IN_PROGRESS")
    (s,) = conn.read_tasks([task])
    assert (s.status, s.closed, s.completed_at) == ("IN_PROGRESS", False, None)


def test_250_tasks_are_read_in_3_calls(portal):
    box, store, conn = portal
    rep = store.add_owner("rep@northwind.example", "Rita", "Rep")
    ids = handoffs(conn, store, rep, 250)
    for task in ids[:10]:
        store.complete_task(task)
    box.calls.clear()
    states = conn.read_tasks(ids)
    assert box.calls == {TASK_READ: 3}
    assert [s.task_id for s in states] == ids
    assert sum(s.closed for s in states) == 10


def test_touches_by_kind_owner_and_since(portal):
    box, store, conn = portal
    rep = store.add_owner("rep@northwind.example", "Rita", "Rep")
    other = store.add_owner("other@northwind.example", "Otto", "Other")
    a = store.add_contact({"email": "a@acme.example"})
    b = store.add_contact({"email": "b@acme.example"})
    quiet = store.add_contact({"email": "quiet@acme.example"})
    since = T0 + timedelta(hours=1)
    call = store.log_call(a, rep, at=T0 + timedelta(hours=2))
    email = store.log_email(a, other, at=T0 + timedelta(hours=3))
    meeting = store.log_meeting(b, rep, at=T0 + timedelta(days=5), logged_at=T0 + timedelta(hours=4))
    store.log_call(b, rep, at=T0 - timedelta(days=1))  # before the handoff: not a touch
    late = store.log_call(b, rep, at=T0, logged_at=T0 + timedelta(hours=6))  # logged after, backdated
    box.calls.clear()

    found = {t.id: t for t in conn.touches([a, b, quiet], since)}
    assert set(found) == {call, email, meeting, late}
    assert (found[call].kind, found[call].person_id, found[call].owner_id) == ("call", a, rep)
    assert found[call].occurred_at == T0 + timedelta(hours=2)
    assert (found[email].kind, found[email].owner_id) == ("email", other)
    assert found[meeting].kind == "meeting"
    assert found[meeting].occurred_at == T0 + timedelta(hours=4)  # booked ahead: counts when booked
    assert found[late].occurred_at == T0  # logged late: counts when it was made
    assert all(t.crm == "hubspot" for t in found.values())
    # one association read and one batch read per engagement type
    assert sum(box.calls.values()) == 6


def test_touches_of_1000_contacts_cost(portal):
    box, store, conn = portal
    rep = store.add_owner("rep@northwind.example", "Rita", "Rep")
    people = [store.add_contact({"email": f"c{i}@acme.example"}) for i in range(1000)]
    for i, c in enumerate(people):
        if i % 10 == 0:
            store.log_call(c, rep, at=T0 + timedelta(hours=2))
    box.calls.clear()
    assert len(list(conn.touches(people, T0))) == 100
    assoc = {k: v for k, v in box.calls.items() if "/associations/" in k}
    assert sum(assoc.values()) == 3  # contacts -> calls, emails, meetings: 1,000 inputs a call
    assert box.calls["POST /crm/v3/objects/calls/batch/read"] == 1  # 100 calls
    assert sum(box.calls.values()) == 4  # no emails or meetings: nothing to read


def test_close_as_reassigned_appends_the_note_once(portal):
    box, store, conn = portal
    rep = store.add_owner("rep@northwind.example", "Rita", "Rep")
    open_, done, gone = handoffs(conn, store, rep, 3)
    store.complete_task(done)
    store.archive_object("tasks", gone)
    items = [
        TaskClose(t, "Reassigned to Bo: no first touch within 4 working hours.") for t in (open_, done, gone)
    ]
    box.calls.clear()

    first = conn.close_tasks(items)
    assert [(r.key, r.ok, r.created, r.code) for r in first] == [
        (open_, True, True, None), (done, True, False, None), (gone, True, False, "DELETED")
    ]  # fmt: skip
    assert box.calls == {TASK_READ: 1, TASK_UPDATE: 1}
    task = store.object("tasks", open_)
    assert task["hs_task_status"] == "COMPLETED"
    assert task["hs_task_body"] == "Scored 80\n\nReassigned to Bo: no first touch within 4 working hours."
    assert store.object("tasks", done)["hs_task_body"] == "Scored 80"  # the rep's completion untouched

    box.calls.clear()
    again = conn.close_tasks(items)
    assert all(r.ok and r.created is False for r in again)
    assert box.calls == {TASK_READ: 1}  # nothing written
    assert store.object("tasks", open_)["hs_task_body"].count("Reassigned to Bo") == 1


def test_close_sets_the_outcome_and_reports_an_unknown_one_per_task(portal):
    _box, store, conn = portal
    rep = store.add_owner("rep@northwind.example", "Rita", "Rep")
    ok, bad = handoffs(conn, store, rep, 2)
    results = conn.close_tasks(
        [TaskClose(ok, "moved", outcome="wrong_rep"), TaskClose(bad, "x", outcome="nope")]
    )
    assert results[0].ok and not results[1].ok
    assert results[1].code == "VALIDATION_ERROR" and "nope" in (results[1].error or "")
    assert store.object("tasks", ok)[OUTCOME_PROPERTY] == "wrong_rep"
    assert store.object("tasks", bad)["hs_task_status"] == "NOT_STARTED"  # nothing half-written


def test_install_outcomes_creates_the_dropdown_once_then_adds_new_values():
    store = HubSpotStore()
    box = HubSpotSandbox(store)
    box.start()
    try:
        conn = HubSpotConnector(HubSpotSettings.with_token(box.base_url, box.token))
        assert install_outcomes(conn, OUTCOMES) == [f"created tasks.{OUTCOME_PROPERTY} with 3 values"]
        prop = store.property("tasks", OUTCOME_PROPERTY)
        assert prop is not None and prop["type"] == "enumeration" and prop["groupName"] == "crm_handoff"
        assert [(o["value"], o["label"]) for o in prop["options"]] == OUTCOMES

        box.calls.clear()
        assert install_outcomes(conn, OUTCOMES) == [f"tasks.{OUTCOME_PROPERTY} already exists"]
        assert not any(k.startswith(("POST /crm/v3/properties", "PATCH")) for k in box.calls)
        assert store.property("tasks", OUTCOME_PROPERTY) == prop

        lines = install_outcomes(conn, [*OUTCOMES, ("no_response", "No response")])
        assert lines == [f"updated tasks.{OUTCOME_PROPERTY}: 1 values added, 4 in all"]
        prop = store.property("tasks", OUTCOME_PROPERTY)
        assert prop is not None and [o["value"] for o in prop["options"]][-1] == "no_response"
    finally:
        box.stop()
