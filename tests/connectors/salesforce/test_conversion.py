"""Outcomes flow back: a person's opportunity stage, read with no call per person.

A converted lead reads its opportunity through ``ConvertedOpportunity`` in the Lead query
itself; a contact through its contact roles (``OpportunityContactRole``: a lead's
conversion makes the converted contact the opportunity's primary role, as Salesforce
does), one query per 200 contacts, five of them a Composite call. An opportunity that
moves (or a role added or removed) brings its contacts back in the incremental pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.salesforce.auth import SalesforceAuthSettings
from connectors.salesforce.connector import OPPORTUNITY_STAGE_AT, SalesforceConnector, SalesforceSettings
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from crm_handoff.records import Person
from mappings import lifecycle

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
SINCE = T0 - timedelta(seconds=60)
LONG_AGO = T0 - timedelta(hours=2)
RECENT = T0 - timedelta(seconds=30)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def box() -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox(SalesforceStore())
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock(LONG_AGO)


@pytest.fixture
def store(box: SalesforceSandbox, clock: Clock) -> SalesforceStore:
    box.store = SalesforceStore(clock=clock)
    box.calls.clear()
    return box.store


def connector(box: SalesforceSandbox, clock: Clock) -> SalesforceConnector:
    assert box.instance_url and box.ca_bundle
    auth = SalesforceAuthSettings(
        instance_url=box.instance_url, access_token=box.token, ca_bundle=box.ca_bundle
    )
    return SalesforceConnector(SalesforceSettings(auth=auth, max_wait=0.01, window_lag=0), clock=clock)


def convert(store: SalesforceStore, i: int, stage: str) -> dict[str, Any]:
    lead = store.insert("Lead", {"LastName": f"Lead{i}", "Company": "Acme", "Email": f"p{i}@acme.example"})
    return store.convert_lead(lead, opportunity={"Name": f"Deal {i}", "StageName": stage})


def opportunity(store: SalesforceStore, stage: str, *contacts: str) -> str:
    opp = store.insert("Opportunity", {"Name": stage, "StageName": stage, "CloseDate": "2026-12-01"})
    for contact in contacts:
        store.insert("OpportunityContactRole", {"OpportunityId": opp, "ContactId": contact})
    return opp


def pulled(conn: SalesforceConnector, since: datetime | None, **kw: Any) -> dict[str, Person]:
    return {p.id: p for page in conn.pull_people(since, **kw) for p in page.people if not p.deleted}


def test_the_values_key_is_the_one_the_lifecycle_reads():
    assert OPPORTUNITY_STAGE_AT == lifecycle.OPPORTUNITY_STAGE_AT


def test_a_converted_lead_and_its_contact_carry_the_opportunity_stage(box, store, clock):
    converted = convert(store, 1, "Closed Won")
    opp = store.get("Opportunity", converted["ConvertedOpportunityId"])
    roles = store.all("OpportunityContactRole")
    assert [(r["OpportunityId"], r["ContactId"], r["IsPrimary"]) for r in roles] == [
        (opp["Id"], converted["ConvertedContactId"], True)  # conversion adds the primary role
    ]
    clock.now = T0

    people = pulled(connector(box, clock), None)

    lead, contact = people[converted["Id"]], people[converted["ConvertedContactId"]]
    assert (lead.object_type, lead.converted_to, lead.opportunity_stage) == (
        "lead",
        converted["ConvertedContactId"],
        "Closed Won",
    )
    assert (contact.object_type, contact.opportunity_stage) == ("contact", "Closed Won")
    for person in (lead, contact):  # never changed stage: it entered it when created
        assert person.values[OPPORTUNITY_STAGE_AT] == opp["CreatedDate"].isoformat()
    assert not [k for k in lead.values if k.startswith("ConvertedOpportunity.")]
    assert lifecycle.outcome_at(contact) == LONG_AGO
    # the lead's opportunity comes with the Lead query; the contact's roles are one query
    assert dict(box.calls) == {"GET /query": 3}


def test_a_contact_is_in_the_stage_of_its_best_opportunity(box, store, clock):
    c = {name: store.insert("Contact", {"LastName": name}) for name in ("won", "open", "lost", "none")}
    opportunity(store, "Closed Won", c["won"])
    opportunity(store, "Closed Lost", c["open"], c["lost"])
    clock.now = LONG_AGO + timedelta(minutes=5)
    opportunity(store, "Qualification", c["won"], c["open"])  # newer, but won outranks it
    clock.now = T0

    people = pulled(connector(box, clock), None)

    stages = {name: people[cid].opportunity_stage for name, cid in c.items()}
    assert stages == {"won": "Closed Won", "open": "Qualification", "lost": "Closed Lost", "none": None}
    assert OPPORTUNITY_STAGE_AT not in people[c["none"]].values


def test_a_moved_opportunity_or_a_changed_role_brings_its_contact_back(box, store, clock):
    converted = convert(store, 1, "Prospecting")
    other = convert(store, 2, "Prospecting")
    plain = store.insert("Contact", {"LastName": "Plain"})
    dropped = store.insert("Contact", {"LastName": "Dropped"})
    big = opportunity(store, "Negotiation/Review", dropped)
    clock.now = T0
    store.update("Opportunity", converted["ConvertedOpportunityId"], {"StageName": "Closed Won"}, at=RECENT)
    store.insert("OpportunityContactRole", {"OpportunityId": big, "ContactId": plain}, at=RECENT)
    role = next(r for r in store.all("OpportunityContactRole") if r["ContactId"] == dropped)
    store.delete("OpportunityContactRole", role["Id"], at=RECENT)

    people = pulled(connector(box, clock), SINCE)

    # the leads, the contacts and the other opportunity are untouched: only these come back
    assert set(people) == {converted["ConvertedContactId"], plain, dropped}
    won = people[converted["ConvertedContactId"]]
    assert won.opportunity_stage == "Closed Won"
    assert won.values[OPPORTUNITY_STAGE_AT] == RECENT.isoformat()  # LastStageChangeDate
    assert people[plain].opportunity_stage == "Negotiation/Review"
    assert people[dropped].opportunity_stage is None
    assert other["ConvertedContactId"] not in people


def test_1000_converted_leads_won_cost_three_calls_and_resume_mid_phase(box, store, clock):
    converted = [convert(store, i, "Prospecting") for i in range(1000)]
    clock.now = LONG_AGO + timedelta(minutes=1)
    box.calls.clear()
    first = pulled(connector(box, clock), None)
    assert len(first) == 2000
    assert {p.opportunity_stage for p in first.values()} == {"Prospecting"}
    # a first sync: the Lead and Contact pages, and the contacts' roles in one Composite call
    # (5 queries of 200); before, the leads' stages took a query per 200 converted leads
    assert dict(box.calls) == {"GET /query": 2, "POST /composite": 1}

    clock.now = T0
    for c in converted:
        store.update("Opportunity", c["ConvertedOpportunityId"], {"StageName": "Closed Won"}, at=RECENT)
    box.calls.clear()
    conn = connector(box, clock)
    pages = list(conn.pull_people(SINCE))

    contacts = {p.id: p for page in pages for p in page.people}
    assert set(contacts) == {c["ConvertedContactId"] for c in converted}
    assert {p.opportunity_stage for p in contacts.values()} == {"Closed Won"}
    # the pass's first pages (the moved opportunities' roles among them) in one Composite
    # call; then the 1,000 contacts (5 queries) and their roles (5 queries): one call each
    assert dict(box.calls) == {"POST /composite": 3}
    assert conn.calls and sum(conn.calls.values()) == 3
    print(f"1,000 converted leads won: {sum(box.calls.values())} Salesforce API calls")

    roles = sorted(store.all("OpportunityContactRole"), key=lambda r: (r["SystemModstamp"], r["Id"]))
    mid = roles[499]
    token = {
        "phase": "Opportunity",
        "upper": T0.isoformat(),
        "ts": mid["SystemModstamp"].isoformat(),
        "id": mid["Id"],
    }
    rest = pulled(connector(box, clock), SINCE, resume=token)
    assert set(rest) == {r["ContactId"] for r in roles[500:]}


def test_a_first_sync_through_bulk_api_reads_converted_leads_stages_from_its_csv(box, store, clock):
    for i in range(2050):
        store.insert("Lead", {"LastName": f"Lead{i}", "Company": "Acme"})
    clock.now = LONG_AGO + timedelta(minutes=1)  # converted after: the last rows, read by Bulk API
    converted = [convert(store, 5000 + i, "Closed Won" if i % 2 else "Qualification") for i in range(50)]
    clock.now = T0
    auth = SalesforceAuthSettings(
        instance_url=str(box.instance_url), access_token=box.token, ca_bundle=box.ca_bundle
    )
    settings = SalesforceSettings(auth=auth, max_wait=0.01, window_lag=0, bulk_threshold=100)
    box.calls.clear()

    people = pulled(SalesforceConnector(settings, clock=clock), None)

    assert box.calls["POST /jobs/query"] == 1  # the rest of the Lead pass came through Bulk API 2.0
    for i, c in enumerate(converted):
        lead, contact = people[c["Id"]], people[c["ConvertedContactId"]]
        stage = "Closed Won" if i % 2 else "Qualification"
        assert (lead.opportunity_stage, contact.opportunity_stage) == (stage, stage)
        assert lead.values[OPPORTUNITY_STAGE_AT] == contact.values[OPPORTUNITY_STAGE_AT]
        assert not [k for k in lead.values if k.startswith("ConvertedOpportunity.")]
    assert sum(1 for p in people.values() if p.opportunity_stage) == 100
