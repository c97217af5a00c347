"""Every text value the connector writes is cut to its field's length, read from describe.

Salesforce refuses a longer value with ``STRING_TOO_LONG`` and fails the whole record: a
10,000-character first name would otherwise fail the Lead create of a handoff.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from connectors.salesforce.auth import SalesforceAuthSettings
from connectors.salesforce.connector import SalesforceConnector, SalesforceSettings, _cut
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from crm_handoff.records import PersonCreate, PersonUpdate, TaskRequest

DESCRIBE = "GET /sobjects/{sobject}/describe"


@pytest.fixture
def box() -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox(SalesforceStore())
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def conn(box: SalesforceSandbox) -> SalesforceConnector:
    assert box.instance_url and box.ca_bundle
    auth = SalesforceAuthSettings(
        instance_url=box.instance_url, access_token=box.token, ca_bundle=box.ca_bundle
    )
    return SalesforceConnector(SalesforceSettings(auth=auth, max_wait=0.01))


def test_sandbox_refuses_a_value_longer_than_its_field_like_salesforce(box, conn):
    res = conn.sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "records": [
                {"attributes": {"type": "Lead"}, "LastName": "L", "Company": "C", "FirstName": "F" * 41}
            ]
        },
    )
    assert res[0]["success"] is False
    assert res[0]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert res[0]["errors"][0]["fields"] == ["FirstName"]


def test_a_10000_character_first_name_is_stored_cut_to_the_field(box, conn):
    values = {"FirstName": "Ö" * 10_000, "LastName": "L" * 500, "Company": "Acme", "Title": "T" * 300}
    (res,) = conn.create_people([PersonCreate(external_id="hs-1", object_type="lead", values=values)])
    assert res.ok, res.error
    stored = box.store.get("Lead", res.crm_id)
    assert stored["FirstName"] == "Ö" * 40  # Lead.FirstName is 40 long
    assert stored["LastName"] == "L" * 80 and stored["Title"] == "T" * 128
    assert stored["HubSpot_Contact_Id__c"] == "hs-1"


def test_updates_and_tasks_are_cut_too_with_one_describe_per_object(box, conn):
    lead = box.store.insert("Lead", {"LastName": "L", "Company": "C"})
    contact = box.store.insert("Contact", {"LastName": "C"})
    reason = "why " * 1000
    updates = [
        PersonUpdate(lead, "lead", {"Handoff_Reason__c": reason, "Handoff_Rep__c": "r" * 400}),
        PersonUpdate(contact, "contact", {"Title": "t" * 129, "MailingCountry": "c" * 81}),
    ]
    assert all(r.ok for r in conn.update_people(updates))
    assert all(r.ok for r in conn.update_people(updates))  # the describes are not read again
    assert box.store.get("Lead", lead)["Handoff_Reason__c"] == reason[:1000]
    assert box.store.get("Lead", lead)["Handoff_Rep__c"] == "r" * 255
    assert box.store.get("Contact", contact)["Title"] == "t" * 128
    assert box.store.get("Contact", contact)["MailingCountry"] == "c" * 80
    assert box.calls[DESCRIBE] == 2  # Lead and Contact, once each for this connector

    user = box.store.integration_user_id
    assert user
    task = TaskRequest(
        key="k" * 80,
        person_id=lead,
        person_type="lead",
        owner_id=user,
        subject="S" * 1000,
        body="B" * 40_000,
        due=date(2026, 12, 1),
        priority="high",
    )
    (res,) = conn.write_tasks([task])
    assert res.ok, res.error
    (stored,) = box.store.all("Task")
    assert stored["Subject"] == "S" * 255 and stored["Description"] == "B" * 32_000
    assert stored["Handoff_Key__c"] == "k" * 80  # keys and ids are never cut
    assert box.calls[DESCRIBE] == 3


def test_cut_counts_characters_as_salesforce_does_and_never_splits_one():
    assert _cut("abc", 3) == "abc" and _cut("abcd", 3) == "abc"
    assert _cut("é" * 5, 3) == "ééé"
    assert _cut("ab😀c", 4) == "ab😀"  # an emoji is two UTF-16 units
    assert _cut("abc😀", 4) == "abc"  # not half of one
    assert _cut("😀" * 3, 5) == "😀😀"
    text = "x" * 39 + "😀"
    assert _cut(text, 40) == "x" * 39
