"""Composite as Salesforce answers it, and what the connector does when one subrequest fails.

Salesforce answers ``POST /composite`` with HTTP 200 and each subrequest's own status and
body; with ``allOrNone: true`` the first failure rolls back the others, which then say
``PROCESSING_HALTED``. The connector sends the first pages of an incremental pass (Lead,
Contact and Opportunity queries, both ``getDeleted`` reads) and of the activity pull that
way (the Opportunity phase's first page is its contact-role query): a failed subrequest
must be read again on its own, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connectors.salesforce.auth import SalesforceAuthSettings
from connectors.salesforce.connector import SalesforceConnector, SalesforceSettings
from connectors.salesforce.sandbox import Faults, SalesforceSandbox, SalesforceStore
from crm_handoff.errors import RetriableCrmError
from crm_handoff.records import PeoplePage

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
V = "/services/data/v62.0"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(clock: Clock) -> SalesforceStore:
    return SalesforceStore(clock=clock)


@pytest.fixture(scope="module")
def server() -> Iterator[SalesforceSandbox]:
    box = SalesforceSandbox(SalesforceStore())
    box.start()
    yield box
    box.stop()


@pytest.fixture
def sandbox(server: SalesforceSandbox, store: SalesforceStore) -> SalesforceSandbox:
    server.store = store
    server.faults = Faults()
    server.calls.clear()
    server.api_usage = 0
    return server


@pytest.fixture
def sf(sandbox: SalesforceSandbox) -> Salesforce:
    session = requests.Session()
    session.verify = sandbox.ca_bundle
    session.trust_env = False
    return Salesforce(
        instance_url=sandbox.instance_url, session_id=sandbox.token, version="62.0", session=session
    )


def composite(sf: Salesforce, subs: list[dict[str, Any]], all_or_none: bool = False) -> list[dict[str, Any]]:
    for i, sub in enumerate(subs):
        sub.setdefault("referenceId", f"r{i}")
        sub.setdefault("method", "GET")
    res = sf.restful("composite", method="POST", json={"allOrNone": all_or_none, "compositeRequest": subs})
    return list(res["compositeResponse"])


def lead(store: SalesforceStore, i: int, at: datetime = T0 - timedelta(minutes=5), **extra: Any) -> str:
    return store.insert("Lead", {"LastName": f"Lead{i}", "Company": "Acme", **extra}, at=at)


# ---------------------------------------------------------------------------- the sandbox


def test_allornone_false_one_failed_subrequest_is_200_with_its_own_status(sandbox, sf, store):
    a = lead(store, 1)
    missing = "00Q5g000000zzzzAAA"
    out = composite(
        sf,
        [
            {"url": f"{V}/query/?q=SELECT+Id+FROM+Lead"},
            {"url": f"{V}/sobjects/Lead/{missing}"},  # NOT_FOUND: once a whole-call 404
            {"url": f"{V}/sobjects/Nope/describe"},
            {"url": f"{V}/sobjects/Lead/{a}", "method": "PATCH", "body": {"Title": "CFO"}},
        ],
    )
    assert [r["httpStatusCode"] for r in out] == [200, 404, 400, 204]
    assert [r["referenceId"] for r in out] == ["r0", "r1", "r2", "r3"]
    assert out[0]["body"]["records"][0]["Id"] == a
    assert out[1]["body"][0]["errorCode"] == "NOT_FOUND"
    assert out[2]["body"][0]["errorCode"] == "INVALID_TYPE"
    assert store.get("Lead", a)["Title"] == "CFO"  # the others ran
    assert sandbox.api_usage == 1  # one API call in all


def test_allornone_true_rolls_back_the_others_and_halts_them(sandbox, sf, store):
    a = lead(store, 1)
    out = composite(
        sf,
        [
            {"url": f"{V}/sobjects/Lead/{a}", "method": "PATCH", "body": {"Title": "CFO"}},
            {"url": f"{V}/sobjects/Lead", "method": "POST", "body": {"LastName": "New", "Company": "X"}},
            {"url": f"{V}/sobjects/Lead/{a}", "method": "PATCH", "body": {"Industry": "No such"}},
            {"url": f"{V}/sobjects/Lead", "method": "POST", "body": {"LastName": "Never", "Company": "X"}},
        ],
        all_or_none=True,
    )
    assert [r["httpStatusCode"] for r in out] == [400, 400, 400, 400]
    assert out[2]["body"][0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    for i in (0, 1, 3):
        assert out[i]["body"][0]["errorCode"] == "PROCESSING_HALTED"
        assert out[i]["referenceId"] == f"r{i}"
    assert store.get("Lead", a)["Title"] is None  # rolled back
    assert len(store.all("Lead")) == 1  # neither create stayed


def test_allornone_true_makes_a_collection_all_or_none_too(sandbox, sf, store):
    records = [
        {"attributes": {"type": "Lead"}, "LastName": "Ok", "Company": "X"},
        {"attributes": {"type": "Lead"}, "LastName": "Bad", "Company": "X", "Industry": "No such"},
    ]
    url = f"{V}/composite/sobjects"
    subs = [{"url": url, "method": "POST", "body": {"allOrNone": False, "records": records}}]
    out = composite(
        sf,
        [*subs, {"url": f"{V}/sobjects/Lead", "method": "POST", "body": {"LastName": "C", "Company": "X"}}],
        True,
    )
    assert out[0]["httpStatusCode"] == 200
    codes = [r["errors"][0]["statusCode"] for r in out[0]["body"]]
    assert codes == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]
    assert out[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert store.all("Lead") == []

    out = composite(sf, [{"url": url, "method": "POST", "body": {"allOrNone": False, "records": records}}])
    assert [r["success"] for r in out[0]["body"]] == [True, False]  # its own allOrNone: false
    assert len(store.all("Lead")) == 1


def test_composite_limits_and_what_a_subrequest_cannot_reach(sandbox, sf):
    query = {"url": f"{V}/query/?q=SELECT+Id+FROM+Lead"}
    with pytest.raises(SalesforceMalformedRequest):
        composite(sf, [dict(query) for _ in range(6)])  # at most 5 queries or collections
    with pytest.raises(SalesforceMalformedRequest):
        composite(sf, [{"url": f"{V}/limits/"} for _ in range(26)])  # at most 25 subrequests
    out = composite(sf, [{"url": "/__sandbox/state"}, {"url": "/services/data/v30.0/limits/"}, query])
    assert [r["httpStatusCode"] for r in out] == [404, 404, 200]


def test_subrequest_fault_fails_the_matching_subrequest_only(sandbox, sf, store):
    lead(store, 1)
    sandbox.faults.merge({"subrequest_error_next": 1, "subrequest_error_match": "/deleted/"})
    window = "start=2026-11-20T09:00:00%2B00:00&end=2026-11-20T10:00:00%2B00:00"
    subs = [
        {"url": f"{V}/query/?q=SELECT+Id+FROM+Lead"},
        {"url": f"{V}/sobjects/Lead/deleted/?{window}"},
        {"url": f"{V}/sobjects/Contact/deleted/?{window}"},
    ]
    out = composite(sf, subs)
    assert [r["httpStatusCode"] for r in out] == [200, 400, 200]
    assert out[1]["body"][0]["errorCode"] == "QUERY_TIMEOUT"
    assert sandbox.faults.subrequest_error_next == 0
    assert [r["httpStatusCode"] for r in composite(sf, subs)] == [200, 200, 200]


# ---------------------------------------------------------------------------- the connector


def connector(box: SalesforceSandbox, clock: Clock) -> SalesforceConnector:
    assert box.instance_url and box.ca_bundle
    auth = SalesforceAuthSettings(
        instance_url=box.instance_url, access_token=box.token, ca_bundle=box.ca_bundle
    )
    return SalesforceConnector(SalesforceSettings(auth=auth, max_wait=0.01, window_lag=0), clock=clock)


SINCE = T0 - timedelta(seconds=60)
PARTS = {
    "Lead query": "FROM+Lead+WHERE",
    "Contact query": "FROM+Contact+WHERE",
    "Opportunity query": "FROM+OpportunityContactRole+WHERE",
    "Lead getDeleted": "/sobjects/Lead/deleted/",
    "Contact getDeleted": "/sobjects/Contact/deleted/",
}


def incremental_scenario(store: SalesforceStore, clock: Clock) -> dict[str, set[str]]:
    """Changes since ``SINCE`` that each reach the connector through one phase only."""
    recent = T0 - timedelta(seconds=30)
    clock.now = T0 - timedelta(hours=2)  # converted long ago; only its Opportunity moved now
    converted = lead(store, 0, at=clock.now)
    opp = store.convert_lead(converted, opportunity={"Name": "Deal", "StageName": "Prospecting"})
    clock.now = T0
    store.update("Opportunity", opp["ConvertedOpportunityId"], {"StageName": "Closed Won"}, at=recent)
    gone_lead = lead(store, 90, at=T0 - timedelta(hours=1))
    gone_contact = store.insert("Contact", {"LastName": "Gone"}, at=T0 - timedelta(hours=1))
    before = T0 - timedelta(seconds=90)  # before SINCE: only getDeleted reports these
    store.delete("Lead", gone_lead, at=before)
    store.delete("Contact", gone_contact, at=before)
    return {  # the converted person comes back as its contact, with the opportunity's stage
        "lead": {lead(store, i, at=recent) for i in range(1, 6)},
        "contact": {store.insert("Contact", {"LastName": f"C{i}"}, at=recent) for i in range(4)}
        | {opp["ConvertedContactId"]},
        "deleted": {gone_lead, gone_contact},
    }


def collect(pages: list[PeoplePage]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"lead": set(), "contact": set(), "deleted": set()}
    for page in pages:
        for p in page.people:
            out["deleted" if p.deleted else p.object_type].add(p.id)
    return out


@pytest.mark.parametrize("part", list(PARTS))
def test_one_failed_subrequest_is_read_again_alone_and_nothing_is_lost(sandbox, store, clock, part, caplog):
    expected = incremental_scenario(store, clock)
    conn = connector(sandbox, clock)
    sandbox.faults.merge({"subrequest_error_next": 1, "subrequest_error_match": PARTS[part]})

    pages = list(conn.pull_people(SINCE))

    assert sandbox.faults.subrequest_error_next == 0  # the fault fired inside the Composite call
    assert collect(pages) == expected  # every phase's records, the failed one's included
    assert pages[-1].resume is None and pages[-1].watermark == T0
    assert sandbox.calls["POST /composite"] == 1
    resource = "GET /sobjects/{sobject}/deleted" if "getDeleted" in part else "GET /queryAll"
    assert sandbox.calls[resource] == 1  # read again on its own: one call more, no more


def test_no_failure_costs_one_composite_call_for_every_first_page(sandbox, store, clock):
    expected = incremental_scenario(store, clock)
    pages = list(connector(sandbox, clock).pull_people(SINCE))
    assert collect(pages) == expected
    assert sandbox.calls["POST /composite"] == 1
    assert sandbox.calls["GET /queryAll"] == sandbox.calls["GET /sobjects/{sobject}/deleted"] == 0


def test_a_subrequest_that_keeps_failing_raises_and_the_pass_resumes_there(sandbox, store, clock):
    expected = incremental_scenario(store, clock)
    conn = connector(sandbox, clock)
    sandbox.faults.merge({"subrequest_error_next": 1, "subrequest_error_match": PARTS["Contact query"]})
    pass_ = conn.pull_people(SINCE)
    first = next(pass_)  # the Lead page, from the Composite answer
    assert len(first.people) == 5 and {p.object_type for p in first.people} == {"lead"}
    sandbox.faults.merge({"server_error_burst": 100})  # the Contact query alone fails too, every time
    with pytest.raises(RetriableCrmError):
        list(pass_)
    assert first.resume is not None and first.resume["phase"] == "Contact"
    assert first.watermark is None  # the pass did not finish: the watermark stays where it was

    sandbox.faults.merge({"server_error_burst": 0})
    rest = list(connector(sandbox, clock).pull_people(SINCE, first.resume))
    assert collect([first, *rest]) == expected
    assert rest[-1].watermark == T0


def test_a_failed_activity_subrequest_is_read_again_alone(sandbox, store, clock):
    person = lead(store, 1)
    recent = T0 - timedelta(seconds=30)
    call = store.insert("Task", {"Subject": "Call", "WhoId": person, "TaskSubtype": "Call"}, at=recent)
    meeting = store.insert("Event", {"Subject": "Meet", "WhoId": person, "StartDateTime": recent}, at=recent)
    sandbox.faults.merge({"subrequest_error_next": 1, "subrequest_error_match": "FROM+Event"})
    got = {a.id for a in connector(sandbox, clock).pull_activities(SINCE)}
    assert got == {call, meeting}
    assert sandbox.calls["GET /query"] == 1


def test_first_pages_an_interrupted_pass_left_unread_are_not_kept(sandbox, store, clock):
    incremental_scenario(store, clock)
    conn = connector(sandbox, clock)
    next(conn.pull_people(SINCE))  # the pass stops after its first page
    assert len(conn._prefetched) == 4  # the other phases' first pages, unread
    clock.now = T0 + timedelta(minutes=1)
    list(conn.pull_people(SINCE))  # the next pass: a later window, other URLs
    assert conn._prefetched == {}
