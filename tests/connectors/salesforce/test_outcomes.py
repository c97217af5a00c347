"""Handoff outcomes read back from Salesforce and Tasks closed there, through simple-salesforce
against the TLS sandbox: Task state by queryAll (completed, open, in the Recycle Bin, purged,
outcome picked), touches (Call/Email Tasks and Events by the rep or someone else, before or
after ``since``, never crm-handoff's own Tasks), closing as reassigned (twice is one close),
the outcome picklist through the Metadata API (created once), and what it all costs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from connectors.salesforce.auth import SalesforceAuthSettings
from connectors.salesforce.connector import SalesforceConnector, SalesforceSettings
from connectors.salesforce.outcomes import OUTCOME_FIELD, install_outcomes
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from crm_handoff.records import TaskClose, TaskRequest

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
OUTCOMES = [("worked", "Worked"), ("not_a_fit", "Not a fit"), ("wrong_rep", "Wrong rep")]
COMPOSITE = "POST /composite"
METADATA = "POST /services/Soap/m/62.0"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(clock: Clock) -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox(SalesforceStore(clock=clock))
    sandbox.start()
    yield sandbox
    sandbox.stop()


def connector(box: SalesforceSandbox) -> SalesforceConnector:
    auth = SalesforceAuthSettings(
        instance_url=box.instance_url, access_token=box.token, ca_bundle=box.ca_bundle
    )
    return SalesforceConnector(SalesforceSettings(auth=auth, max_wait=0.01, window_lag=0))


@pytest.fixture
def conn(box: SalesforceSandbox) -> SalesforceConnector:
    c = connector(box)
    assert install_outcomes(c, OUTCOMES)[0].startswith(f"Task.{OUTCOME_FIELD} updated")
    box.calls.clear()
    return c


def user(store: SalesforceStore, name: str) -> str:
    email = f"{name}@northwind.example"
    return store.insert("User", {"Username": email, "Email": email, "LastName": name})


def lead(store: SalesforceStore, n: int) -> str:
    return store.insert("Lead", {"LastName": f"Lead {n}", "Company": "Acme", "Email": f"l{n}@acme.example"})


def handoffs(conn: SalesforceConnector, store: SalesforceStore, rep: str, n: int) -> list[str]:
    """``n`` handoff Tasks written by the connector, one per new lead; their ids."""
    people = [lead(store, i) for i in range(n)]
    tasks = [
        TaskRequest(f"k{i}", p, "lead", rep, "Follow up", "Scored 80", date(2026, 11, 3), "high")
        for i, p in enumerate(people)
    ]
    results = conn.write_tasks(tasks)
    assert all(r.ok for r in results)
    return [str(r.crm_id) for r in results]


def calls(box: SalesforceSandbox) -> int:
    return sum(v for k, v in box.calls.items() if not k.endswith("/describe"))


def test_read_tasks_completed_open_deleted_purged_and_outcome(box, conn, clock):
    store = box.store
    rep = user(store, "rita")
    done, open_, binned, purged, rejected = handoffs(conn, store, rep, 5)
    clock.now = T0 + timedelta(hours=3)
    store.update("Task", done, {"Status": "Completed"})
    store.update("Task", rejected, {"Status": "Completed", OUTCOME_FIELD: "not_a_fit"})
    store.delete("Task", binned)
    store.delete("Task", purged)
    store.purge("Task", [purged])
    box.calls.clear()

    states = {s.task_id: s for s in conn.read_tasks([done, open_, binned, purged, rejected, done])}
    assert len(states) == 5
    assert box.calls == {"GET /queryAll": 1}  # one statement: no Composite needed
    s = states[done]
    assert (s.key, s.status, s.closed, s.completed_at, s.owner_id, s.outcome, s.deleted) == (
        "k0", "Completed", True, T0 + timedelta(hours=3), rep, None, False
    )  # fmt: skip
    s = states[open_]
    assert (s.key, s.status, s.closed, s.completed_at, s.deleted) == ("k1", "Not Started", False, None, False)
    assert states[binned].deleted and states[binned].key == "k2"  # the Recycle Bin: queryAll sees it
    assert states[purged].deleted and states[purged].key is None
    assert (states[rejected].outcome, states[rejected].closed) == ("not_a_fit", True)


def test_reopened_task_has_no_completion_and_a_15_character_id_is_found(box, conn, clock):
    store = box.store
    (task,) = handoffs(conn, store, user(store, "rita"), 1)
    store.update("Task", task, {"Status": "Completed"})
    clock.now = T0 + timedelta(hours=1)
    store.update("Task", task, {"Status": "In Progress"})
    (s,) = conn.read_tasks([task[:15]])
    assert (s.task_id, s.status, s.closed, s.completed_at, s.deleted) == (
        task[:15],
        "In Progress",
        False,
        None,
        False,
    )


def test_completion_time_is_when_it_was_closed_not_its_last_change(box, conn, clock):
    store = box.store
    (task,) = handoffs(conn, store, user(store, "rita"), 1)
    clock.now = T0 + timedelta(hours=1)
    store.update("Task", task, {"Status": "Completed"})
    clock.now = T0 + timedelta(hours=5)
    store.update("Task", task, {"Subject": "Follow up (done)"})
    (s,) = conn.read_tasks([task])
    assert (s.closed, s.completed_at, s.modified_at) == (
        True,
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=5),
    )


def test_1000_tasks_are_read_in_one_call(box, conn):
    store = box.store
    ids = handoffs(conn, store, user(store, "rita"), 1000)
    for task in ids[:7]:
        store.update("Task", task, {"Status": "Completed"})
    box.calls.clear()
    states = conn.read_tasks(ids)
    assert [s.task_id for s in states] == ids and sum(s.closed for s in states) == 7
    assert calls(box) == 1 and box.calls[COMPOSITE] == 1  # 5 statements of 200 ids: one Composite call


def test_touches_by_kind_owner_and_since(box, conn, clock):
    store = box.store
    rep, other = user(store, "rita"), user(store, "otto")
    a, b, quiet = lead(store, 1), lead(store, 2), lead(store, 3)
    contact = store.insert("Contact", {"LastName": "Cole", "Email": "cole@acme.example"})
    (own_task,) = handoffs(conn, store, rep, 1)  # crm-handoff's own Task: never a touch
    store.update("Task", own_task, {"WhoId": a})
    clock.now = T0 - timedelta(days=1)
    store.insert(
        "Task", {"WhoId": a, "OwnerId": rep, "TaskSubtype": "Call", "Status": "Completed", "Subject": "old"}
    )
    since = T0 + timedelta(hours=1)
    clock.now = T0 + timedelta(hours=2)
    call = store.insert("Task", {"WhoId": a, "OwnerId": rep, "TaskSubtype": "Call", "Status": "Completed"})
    todo = store.insert("Task", {"WhoId": a, "OwnerId": rep, "Status": "Not Started", "Subject": "to do"})
    clock.now = T0 + timedelta(hours=3)
    email = store.insert(
        "Task", {"WhoId": b, "OwnerId": other, "TaskSubtype": "Email", "Status": "Completed"}
    )
    clock.now = T0 + timedelta(hours=4)
    meeting = store.insert(
        "Event",
        {"WhoId": contact, "OwnerId": rep, "StartDateTime": T0 + timedelta(days=5), "DurationInMinutes": 30},
    )
    box.calls.clear()

    found = {t.id: t for t in conn.touches([a, b, quiet, contact], since)}
    assert set(found) == {call, email, meeting}, todo
    assert (found[call].kind, found[call].person_id, found[call].owner_id) == ("call", a, rep)
    assert found[call].occurred_at == T0 + timedelta(hours=2)
    assert (found[email].kind, found[email].owner_id) == ("email", other)
    assert (found[meeting].kind, found[meeting].person_id) == ("meeting", contact)
    assert found[meeting].occurred_at == T0 + timedelta(hours=4)  # booked ahead: counts when booked
    assert all(t.crm == "salesforce" for t in found.values())
    assert box.calls == {COMPOSITE: 1}  # a Task and an Event statement in one call


def test_touches_of_1000_people_cost_2_calls(box, conn, clock):
    store = box.store
    rep = user(store, "rita")
    people = [lead(store, i) for i in range(1000)]
    clock.now = T0 + timedelta(hours=2)
    for p in people[::10]:
        store.insert("Task", {"WhoId": p, "OwnerId": rep, "TaskSubtype": "Call", "Status": "Completed"})
    box.calls.clear()
    assert len(list(conn.touches(people, T0))) == 100
    assert box.calls == {COMPOSITE: 2}  # 5 Task and 5 Event statements of 200 ids, 5 a call


def test_close_as_reassigned_appends_the_note_once(box, conn):
    store = box.store
    rep = user(store, "rita")
    open_, done, gone = handoffs(conn, store, rep, 3)
    store.update("Task", done, {"Status": "Completed"})
    store.delete("Task", gone)
    note = "Reassigned to Bo: no first touch within 4 working hours."
    items = [TaskClose(t, note, outcome="wrong_rep" if t == open_ else None) for t in (open_, done, gone)]
    box.calls.clear()

    first = conn.close_tasks(items)
    assert [(r.key, r.ok, r.created, r.code) for r in first] == [
        (open_, True, True, None), (done, True, False, None), (gone, True, False, "DELETED")
    ]  # fmt: skip
    assert box.calls == {"GET /query": 1, "PATCH /composite/sobjects": 1}  # one read, one write
    task = store.get("Task", open_)
    assert task is not None
    assert (task["Status"], task["IsClosed"], task[OUTCOME_FIELD]) == ("Completed", True, "wrong_rep")
    assert task["Description"] == f"Scored 80\n\n{note}"
    done_task = store.get("Task", done)
    assert done_task is not None and done_task["Description"] == "Scored 80"  # the rep's completion untouched

    box.calls.clear()
    again = conn.close_tasks(items)
    assert all(r.ok and r.created is False for r in again)
    assert "PATCH /composite/sobjects" not in box.calls  # nothing written
    task = store.get("Task", open_)
    assert task is not None and task["Description"].count("Reassigned to Bo") == 1


def test_close_reports_a_bad_outcome_per_task_and_writes_nothing_of_it(box, conn):
    store = box.store
    ok, bad = handoffs(conn, store, user(store, "rita"), 2)
    results = conn.close_tasks([TaskClose(ok, "moved"), TaskClose(bad, "moved", outcome="nope")])
    assert results[0].ok and not results[1].ok
    assert results[1].code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    task = store.get("Task", bad)
    assert task is not None and task["Status"] == "Not Started" and task["Description"] == "Scored 80"


def test_install_creates_the_restricted_picklist_once_then_adds_new_values():
    box = SalesforceSandbox(SalesforceStore(custom_fields=False))
    box.start()
    try:
        conn = connector(box)
        assert install_outcomes(conn, OUTCOMES)[0].startswith(f"Task.{OUTCOME_FIELD} created with 3 values")
        assert conn.calls[METADATA] == 1
        field = next(f for f in conn.sf.Task.describe()["fields"] if f["name"] == OUTCOME_FIELD)
        assert field["type"] == "picklist" and field["restrictedPicklist"] and field["custom"]
        assert [(p["value"], p["label"]) for p in field["picklistValues"]] == OUTCOMES
        assert any(
            f["name"] == OUTCOME_FIELD for f in conn.sf.Event.describe()["fields"]
        )  # an Activity field

        assert install_outcomes(conn, OUTCOMES) == [f"Task.{OUTCOME_FIELD} present"]
        assert conn.calls[METADATA] == 1  # no second Metadata API call

        lines = install_outcomes(conn, [*OUTCOMES, ("no_response", "No response")])
        assert lines == [f"Task.{OUTCOME_FIELD} updated: 1 values added, 4 in all"]
        field = next(f for f in conn.sf.Task.describe()["fields"] if f["name"] == OUTCOME_FIELD)
        assert [p["value"] for p in field["picklistValues"]][-1] == "no_response"
    finally:
        box.stop()


def test_install_without_metadata_access_says_what_to_create():
    box = SalesforceSandbox(SalesforceStore(custom_fields=False))
    box.metadata_api_allowed = False
    box.start()
    try:
        (line,) = install_outcomes(connector(box), OUTCOMES)
        assert line.startswith(f"MISSING Task.{OUTCOME_FIELD} (INSUFFICIENT_ACCESS)")
        assert "worked, not_a_fit, wrong_rep" in line
    finally:
        box.stop()


def test_task_changes_is_one_composite_call_and_reads_no_describe(box, conn, clock):
    store = box.store
    rep = user(store, "dana")
    ids = handoffs(conn, store, rep, 3)
    since = clock.now
    clock.now += timedelta(minutes=5)
    store.update("Task", ids[0], {"Status": "Completed", OUTCOME_FIELD: "worked"})
    box.calls.clear()
    fresh = connector(box)  # a new cycle's connector: no describe cached on it
    changes = fresh.task_changes(since, [rep])
    assert [(t.task_id[:15], t.closed, t.outcome) for t in changes.tasks] == [(ids[0][:15], True, "worked")]
    assert sum(box.calls.values()) == 1 and not any("describe" in name for name in box.calls), dict(box.calls)


def test_task_changes_in_an_org_without_the_outcome_picklist(clock):
    from dataclasses import replace

    from connectors.salesforce import outcomes

    store = SalesforceStore(clock=clock)
    table = store._tables["Task"]
    table.definition = replace(table.definition, hidden=table.definition.hidden | {OUTCOME_FIELD})
    sandbox = SalesforceSandbox(store)
    sandbox.start()
    try:
        outcomes._HAS_OUTCOME.clear()
        c = connector(sandbox)
        rep = user(store, "dana")
        ids = handoffs(c, store, rep, 2)
        since = clock.now
        clock.now += timedelta(minutes=5)
        store.update("Task", ids[1], {"Status": "Completed"})
        changes = c.task_changes(since, [rep])  # INVALID_FIELD, then again without the field
        assert [(t.task_id[:15], t.closed, t.outcome) for t in changes.tasks] == [(ids[1][:15], True, None)]
        sandbox.calls.clear()
        assert c.task_changes(since, [rep]).tasks and sum(sandbox.calls.values()) == 1  # remembered
    finally:
        outcomes._HAS_OUTCOME.clear()
        sandbox.stop()
