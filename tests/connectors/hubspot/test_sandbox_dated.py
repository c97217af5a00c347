"""The sandbox serves exactly the published date-versioned paths, with HubSpot's limits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from connectors.hubspot.paths import VERSIONS
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from tests.connectors.hubspot.published import is_published

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SAMPLE = {"objectType": "contacts", "fromObjectType": "contacts", "toObjectType": "meetings"}


@pytest.fixture
def store() -> HubSpotStore:
    return HubSpotStore()


@pytest.fixture
def sandbox(store: HubSpotStore) -> Iterator[HubSpotSandbox]:
    box = HubSpotSandbox(store)
    box.start()
    yield box
    box.stop()


def call(box: HubSpotSandbox, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {box.token}"}
    return requests.request(
        method, box.base_url + path, json=body, params=params, headers=headers, timeout=10
    )


def test_every_dated_route_the_sandbox_has_is_a_published_path(sandbox: HubSpotSandbox) -> None:
    dated = [r for r in sandbox.url_map.iter_rules() if "version" in r.arguments]
    assert len(dated) > 20
    for rule in dated:
        for version in VERSIONS:
            path = re.sub(r"<any\([^)]*\):version>", version, rule.rule)
            path = re.sub(r"<(\w+)>", lambda m: SAMPLE.get(m.group(1), "101"), path)
            for method in rule.methods or ():
                if method not in ("HEAD", "OPTIONS"):
                    assert is_published(method, path, version), f"sandbox serves {method} {path}"


@pytest.mark.parametrize("version", VERSIONS)
def test_published_paths_are_served(sandbox: HubSpotSandbox, store: HubSpotStore, version: str) -> None:
    store.add_owner("sam@x.example", "Sam", "O")
    cid = store.add_contact({"email": "a@x.example"})
    requests_ = [
        ("GET", f"/crm/owners/{version}", None),  # issue item 3: no trailing slash needed
        ("GET", f"/events/event-occurrences/{version}", None),  # issue item 2
        ("GET", f"/crm/objects/{version}/contacts", None),
        ("POST", f"/crm/objects/{version}/contacts/search", {"limit": 10}),
        ("POST", f"/crm/objects/{version}/contacts/batch/read", {"inputs": [{"id": cid}]}),
        ("POST", f"/crm/associations/{version}/contacts/meetings/batch/read", {"inputs": [{"id": cid}]}),
        ("GET", f"/crm/objects/{version}/contacts/{cid}/associations/companies", None),
        ("GET", f"/crm/properties/{version}/contacts", None),
        ("GET", f"/crm/properties/{version}/contacts/groups", None),
    ]
    for method, path, body in requests_:
        assert is_published(method, path, version)
        got = call(sandbox, method, path, body)
        assert got.status_code in (200, 207), (path, got.status_code, got.text)


@pytest.mark.parametrize(
    "path",
    [
        "/events/2026-03/events",  # what paths.py used to derive
        "/events/2026-03/events/event-types",
        "/crm/objects/2026-04/contacts",  # no spec for this version
        "/crm/objects/2025-09/contacts",
        "/crm/objects/2026-03",
        "/events/event-occurrences/v3",
    ],
)
def test_paths_the_specs_do_not_have_are_404_with_hubspots_error_body(
    sandbox: HubSpotSandbox, path: str
) -> None:
    got = call(sandbox, "GET", path)
    assert got.status_code == 404
    body = got.json()
    assert body["status"] == "error" and body["category"] == "OBJECT_NOT_FOUND" and body["correlationId"]


def test_owners_answer_on_the_spec_path_and_count_it(sandbox: HubSpotSandbox, store: HubSpotStore) -> None:
    store.add_owner("sam@x.example", "Sam", "O")
    got = call(sandbox, "GET", "/crm/owners/2026-03", limit=10)
    assert got.status_code == 200 and [o["email"] for o in got.json()["results"]] == ["sam@x.example"]
    assert sandbox.calls["GET /crm/owners/2026-03"] == 1


# --- documented limits -----------------------------------------------------------


def test_list_limit_above_100_is_served_as_100_with_a_next_page(
    sandbox: HubSpotSandbox, store: HubSpotStore
) -> None:
    for i in range(130):
        store.add_contact({"email": f"p{i}@x.example"})
    page = call(sandbox, "GET", "/crm/objects/2026-03/contacts", limit=1000).json()
    assert len(page["results"]) == 100 and page["paging"]["next"]["after"]


def test_owners_limit_above_500_is_served_as_500(sandbox: HubSpotSandbox, store: HubSpotStore) -> None:
    for i in range(510):
        store.add_owner(f"o{i}@x.example", "O", str(i))
    page = call(sandbox, "GET", "/crm/owners/2026-03", limit=5000).json()
    assert len(page["results"]) == 500 and page["paging"]["next"]["after"]


def test_search_above_200_and_batches_above_their_maximum_are_400(
    sandbox: HubSpotSandbox, store: HubSpotStore
) -> None:
    assert call(sandbox, "POST", "/crm/objects/2026-03/contacts/search", {"limit": 201}).status_code == 400
    many = {"inputs": [{"id": str(i)} for i in range(101)]}
    assert call(sandbox, "POST", "/crm/objects/2026-03/contacts/batch/read", many).status_code == 400
    assoc = {"inputs": [{"id": str(i)} for i in range(1001)]}
    got = call(sandbox, "POST", "/crm/associations/2026-03/contacts/meetings/batch/read", assoc)
    assert got.status_code == 400 and got.json()["category"] == "VALIDATION_ERROR"


def test_association_reads_page_at_500_per_record(sandbox: HubSpotSandbox, store: HubSpotStore) -> None:
    cid = store.add_contact({"email": "busy@x.example"})
    for i in range(520):
        store.add_engagement("notes", {"hs_note_body": f"n{i}"}, [cid], T0)
    path = f"/crm/objects/2026-03/contacts/{cid}/associations/notes"
    first = call(sandbox, "GET", path, limit=5000).json()
    assert len(first["results"]) == 500
    rest = call(sandbox, "GET", path, after=first["paging"]["next"]["after"]).json()
    assert len(rest["results"]) == 20 and "paging" not in rest
    batch = call(
        sandbox, "POST", "/crm/associations/2026-03/contacts/notes/batch/read", {"inputs": [{"id": cid}]}
    )
    row = batch.json()["results"][0]
    assert len(row["to"]) == 500 and row["paging"]["next"]["after"]
    more = {"inputs": [{"id": cid, "after": row["paging"]["next"]["after"]}]}
    row = call(sandbox, "POST", "/crm/associations/2026-03/contacts/notes/batch/read", more).json()[
        "results"
    ][0]
    assert len(row["to"]) == 20 and "paging" not in row


# --- companies and deals -----------------------------------------------------------


def test_companies_and_deals_list_search_batch_read_and_associate_to_contacts(
    sandbox: HubSpotSandbox, store: HubSpotStore
) -> None:
    cid = store.add_contact({"email": "buyer@acme.example"})
    made = call(
        sandbox,
        "POST",
        "/crm/objects/2026-03/companies",
        {
            "properties": {"name": "Acme", "domain": "acme.example", "numberofemployees": "250"},
            "associations": [
                {
                    "to": {"id": cid},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 2}],
                }
            ],
        },
    )
    assert made.status_code == 201, made.text
    company = made.json()["id"]
    deal = call(
        sandbox,
        "POST",
        "/crm/objects/2026-03/deals/batch/create",
        {
            "inputs": [
                {
                    "properties": {"dealname": "Acme renewal", "dealstage": "closedwon", "amount": "5000"},
                    "associations": [
                        {
                            "to": {"id": cid},
                            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
                        }
                    ],
                }
            ]
        },
    )
    assert deal.status_code == 201, deal.text
    deal_id = deal.json()["results"][0]["id"]

    listed = call(sandbox, "GET", "/crm/objects/2026-03/companies").json()["results"]
    assert [c["properties"]["name"] for c in listed] == ["Acme"]
    assert set(listed[0]["properties"]) == {
        "createdate",
        "domain",
        "hs_lastmodifieddate",
        "hs_object_id",
        "name",
    }
    search = {"filterGroups": [{"filters": [{"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}]}],
              "properties": ["dealname", "hs_is_closed_won", "pipeline"]}  # fmt: skip
    found = call(sandbox, "POST", "/crm/objects/2026-03/0-3/search", search).json()
    assert found["total"] == 1
    assert (
        found["results"][0]["properties"].items()
        >= {"hs_is_closed_won": "true", "pipeline": "default"}.items()
    )
    read = call(sandbox, "POST", "/crm/objects/2026-03/companies/batch/read",
                {"inputs": [{"id": company}], "properties": ["numberofemployees"]}).json()  # fmt: skip
    assert read["results"][0]["properties"]["numberofemployees"] == "250"

    to_companies = call(sandbox, "POST", "/crm/associations/2026-03/contacts/companies/batch/read",
                        {"inputs": [{"id": cid}]}).json()["results"][0]["to"]  # fmt: skip
    assert [(t["toObjectId"], [a["typeId"] for a in t["associationTypes"]]) for t in to_companies] == [
        (int(company), [1, 279])
    ]
    to_contacts = call(sandbox, "POST", "/crm/associations/2026-03/deals/contacts/batch/read",
                       {"inputs": [{"id": deal_id}]}).json()["results"][0]["to"]  # fmt: skip
    assert [t["toObjectId"] for t in to_contacts] == [int(cid)]
    assert store.contact(cid)["associatedcompanyid"] == company
    assert store.primary_company("contacts", cid) == company


def test_a_deal_needs_a_name_and_stage(sandbox: HubSpotSandbox) -> None:
    got = call(sandbox, "POST", "/crm/objects/2026-03/deals", {"properties": {"amount": "1"}})
    assert got.status_code == 400 and "dealname" in got.json()["message"]


# --- last activity date (issue item 14) ---------------------------------------------


@pytest.mark.parametrize("kind", ["meetings", "calls", "notes", "emails"])
def test_an_activity_created_for_a_contact_moves_its_last_activity_date(
    sandbox: HubSpotSandbox, store: HubSpotStore, kind: str
) -> None:
    cid = store.add_contact({"email": "a@x.example"}, created_at=T0 - timedelta(days=30))
    before = store.contact(cid)["lastmodifieddate"]
    type_id = {"meetings": 200, "calls": 194, "notes": 202, "emails": 198}[kind]
    at = "2026-11-20T09:30:00.000Z"
    body = {
        "properties": {"hs_timestamp": at},
        "associations": [
            {
                "to": {"id": cid},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
            }
        ],
    }
    assert call(sandbox, "POST", f"/crm/objects/2026-03/{kind}", body).status_code == 201
    after = store.contact(cid)
    assert after["notes_last_updated"] == at
    assert after["lastmodifieddate"] > before  # the recalculated property is a change to the contact


def test_associating_an_existing_meeting_moves_it_too_but_a_task_does_not(
    sandbox: HubSpotSandbox, store: HubSpotStore
) -> None:
    cid = store.add_contact({"email": "a@x.example"}, created_at=T0 - timedelta(days=30))
    meeting = call(
        sandbox,
        "POST",
        "/crm/objects/2026-03/meetings",
        {"properties": {"hs_timestamp": "2026-11-19T10:00:00Z"}},
    )
    task = call(
        sandbox,
        "POST",
        "/crm/objects/2026-03/tasks",
        {
            "properties": {"hs_timestamp": "2026-11-21T10:00:00Z", "hs_task_subject": "x"},
            "associations": [
                {
                    "to": {"id": cid},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
                }
            ],
        },
    )
    assert task.status_code == 201 and "notes_last_updated" not in store.contact(cid)
    path = f"/crm/objects/2026-03/meetings/{meeting.json()['id']}/associations/default/contacts/{cid}"
    assert call(sandbox, "PUT", path).status_code == 200
    assert store.contact(cid)["notes_last_updated"] == "2026-11-19T10:00:00.000Z"
    older = call(
        sandbox,
        "POST",
        "/crm/objects/2026-03/notes",
        {"properties": {"hs_timestamp": "2026-11-01T10:00:00Z"}},
    )
    call(
        sandbox, "PUT", f"/crm/objects/2026-03/notes/{older.json()['id']}/associations/default/contacts/{cid}"
    )
    assert store.contact(cid)["notes_last_updated"] == "2026-11-19T10:00:00.000Z"  # never moves back
