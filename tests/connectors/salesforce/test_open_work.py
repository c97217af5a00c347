"""Aggregate SOQL as Salesforce answers it, and the connector's open-work counts built on it.

``SELECT OwnerId, COUNT(Id) FROM Task ... GROUP BY OwnerId`` answers ``AggregateResult``
records: grouped fields under their names, an unaliased aggregate as ``expr0``, ``expr1``...,
one page (``done``, no ``nextRecordsUrl``). Fields neither grouped nor aggregated, and long
text areas in GROUP BY, are refused as Salesforce refuses them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connectors.base import ANY_TYPE, OpenWork
from connectors.salesforce.auth import SalesforceAuthSettings
from connectors.salesforce.connector import SalesforceConnector, SalesforceSettings
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore


@pytest.fixture(scope="module")
def box() -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox(SalesforceStore())
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def store(box: SalesforceSandbox) -> SalesforceStore:
    box.store = SalesforceStore()
    box.calls.clear()
    return box.store


@pytest.fixture
def sf(box: SalesforceSandbox, store: SalesforceStore) -> Salesforce:
    session = requests.Session()
    session.verify = box.ca_bundle
    session.trust_env = False
    return Salesforce(instance_url=box.instance_url, session_id=box.token, version="62.0", session=session)


@pytest.fixture
def conn(box: SalesforceSandbox, store: SalesforceStore) -> SalesforceConnector:
    auth = SalesforceAuthSettings(
        instance_url=box.instance_url, access_token=box.token, ca_bundle=box.ca_bundle
    )
    return SalesforceConnector(SalesforceSettings(auth=auth, max_wait=0.01, window_lag=0))


def user(store: SalesforceStore, name: str) -> str:
    email = f"{name}@northwind.example"
    return store.insert("User", {"Username": email, "Email": email, "LastName": name})


def task(store: SalesforceStore, owner: str, type_: str | None = "Call", **extra: object) -> str:
    return store.insert("Task", {"Subject": "Follow up", "OwnerId": owner, "Type": type_, **extra})


def test_group_by_owner_answers_aggregate_results_in_one_page(sf, store):
    a, b = user(store, "a"), user(store, "b")
    for _ in range(3):
        task(store, a)
    task(store, a, "Email")
    task(store, b, None)
    task(store, b, "Call", Status="Completed")  # closed
    res = sf.query(
        format_in(
            "SELECT OwnerId, COUNT(Id) FROM Task WHERE IsClosed = false AND OwnerId IN {} GROUP BY OwnerId",
            [a, b],
        )
    )
    assert res["done"] is True and "nextRecordsUrl" not in res and res["totalSize"] == 2
    rows = {r["OwnerId"]: r for r in res["records"]}
    assert rows[a] == {"attributes": {"type": "AggregateResult"}, "OwnerId": a, "expr0": 4}
    assert rows[b]["expr0"] == 1

    by_type = sf.query(
        "SELECT OwnerId, Type, COUNT(Id) n, COUNT(Type) FROM Task GROUP BY OwnerId, Type ORDER BY Type"
    )
    got = [(r["OwnerId"], r["Type"], r["n"], r["expr0"]) for r in by_type["records"]]
    assert got == [(b, None, 1, 0), (a, "Call", 3, 3), (b, "Call", 1, 1), (a, "Email", 1, 1)]  # nulls first


def test_aggregate_without_group_by_is_one_row_even_over_nothing(sf, store):
    res = sf.query("SELECT COUNT(Id) FROM Task WHERE Subject = 'nothing like it'")
    assert res["totalSize"] == 1 and res["records"] == [
        {"attributes": {"type": "AggregateResult"}, "expr0": 0}
    ]
    assert sf.query("SELECT COUNT() FROM Task")["totalSize"] == 0  # COUNT() is still the plain count


@pytest.mark.parametrize(
    ("soql", "code", "message"),
    [
        (
            "SELECT Subject, COUNT(Id) FROM Task GROUP BY OwnerId",
            "MALFORMED_QUERY",
            "Field must be grouped or aggregated: Subject",
        ),
        (
            "SELECT OwnerId FROM Task GROUP BY OwnerId ORDER BY Subject",
            "MALFORMED_QUERY",
            "Ordered field must be grouped",
        ),
        (
            "SELECT COUNT(Id) FROM Task GROUP BY Description",
            "INVALID_FIELD",
            "can not be grouped in a query call",
        ),
        ("SELECT COUNT() FROM Task GROUP BY OwnerId", "MALFORMED_QUERY", "COUNT()"),
        ("SELECT COUNT(Id) n, COUNT(OwnerId) n FROM Task", "MALFORMED_QUERY", "duplicate alias: n"),
        (
            "SELECT OwnerId, COUNT(Nope__c) FROM Task GROUP BY OwnerId",
            "INVALID_FIELD",
            "No such column 'Nope__c'",
        ),
    ],
)
def test_bad_aggregates_are_refused_as_salesforce_refuses_them(sf, store, soql, code, message):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(soql)
    err = exc.value.content[0]
    assert err["errorCode"] == code and message in err["message"]


def test_aggregate_query_has_no_second_page(sf, store):
    owner = user(store, "a")
    for i in range(2001):
        task(store, owner, Subject=f"t{i}")
    with pytest.raises(SalesforceMalformedRequest, match="does not support queryMore"):
        sf.query("SELECT Subject, COUNT(Id) FROM Task GROUP BY Subject")
    assert len(sf.query("SELECT Subject, COUNT(Id) FROM Task GROUP BY Subject LIMIT 2000")["records"]) == 2000


def test_open_work_counts_hand_assigned_tasks_and_leads_per_owner_in_one_call(box, store, conn):
    a, b, c = user(store, "a"), user(store, "b"), user(store, "c")
    for t in ("Call", "Call", "Email", "Other"):
        task(store, a, t)
    task(store, a, "Call", Status="Completed")
    task(store, a, "Call", Handoff_Key__c="k1")  # crm-handoff's own: the ledger counts it
    for t in ("Email", None):
        task(store, b, t)
    lead = {"LastName": "L", "Company": "Acme", "Status": "Working - Contacted"}
    store.insert("Lead", {**lead, "OwnerId": c})
    store.insert("Lead", {**lead, "OwnerId": c, "Handoff_Status__c": "handed off"})  # ours
    store.insert("Lead", {**lead, "OwnerId": c, "Status": "Nurture"})
    task(store, c, "Call")
    box.calls.clear()
    wanted = {
        a: OpenWork(task_types=("call", "Email")),  # picklist values match in any case
        b: OpenWork(task_types=(ANY_TYPE,)),
        c: OpenWork(lead_statuses=("Working - Contacted",)),
    }
    assert conn.open_work(wanted) == {a: 3, b: 2, c: 1}
    assert sum(box.calls.values()) == 1 and box.calls["POST /composite"] == 1
    box.calls.clear()
    assert conn.open_work({a: OpenWork(task_types=("Call",))}) == {a: 2}
    assert sum(box.calls.values()) == 1  # one statement: one plain query


def test_open_work_for_many_owners_stays_a_call_per_five_statements(box, store, conn):
    owners = [user(store, f"u{i}") for i in range(450)]  # 3 statements of at most 200 owners
    for o in owners[::50]:
        task(store, o)
    box.calls.clear()
    counts = conn.open_work({o: OpenWork(task_types=(ANY_TYPE,)) for o in owners})
    assert sum(counts.values()) == 9 and counts[owners[50]] == 1 and counts[owners[1]] == 0
    assert sum(box.calls.values()) == 1


def format_in(soql: str, ids: list[str]) -> str:
    return soql.replace("{}", "(" + ", ".join(f"'{i}'" for i in ids) + ")")
