"""The HubSpot sandbox, driven through the official SDK over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
)
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.objects.tasks import (
    AssociationSpec,
    BatchInputSimplePublicObjectBatchInputForCreate,
    PublicAssociationsForObject,
    PublicObjectId,
    SimplePublicObjectBatchInputForCreate,
)
from hubspot.crm.objects.tasks.exceptions import ApiException as TasksApiException
from hubspot.crm.owners.exceptions import ApiException as OwnersApiException
from hubspot.crm.properties import PropertyCreate
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

from connectors.hubspot.sandbox import Faults, HubSpotSandbox, HubSpotStore

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def store() -> HubSpotStore:
    return HubSpotStore(portal_id=12345)


@pytest.fixture
def sandbox(store: HubSpotStore) -> Iterator[HubSpotSandbox]:
    sb = HubSpotSandbox(store)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture
def client(sandbox: HubSpotSandbox) -> HubSpot:
    return HubSpot(access_token=sandbox.token, host=sandbox.base_url, base_url=sandbox.base_url)


def seed_contacts(store: HubSpotStore, n: int, **props: str) -> list[str]:
    return [
        store.add_contact(
            {"email": f"p{i}@example.com", "firstname": f"P{i}", **props}, T0 + timedelta(minutes=i)
        )
        for i in range(n)
    ]


def task_input(
    subject: str, contact_id: str, trace: str | None, **props: str
) -> SimplePublicObjectBatchInputForCreate:
    return SimplePublicObjectBatchInputForCreate(
        properties={"hs_timestamp": "2026-11-22T09:00:00Z", "hs_task_subject": subject, **props},
        associations=[
            PublicAssociationsForObject(
                to=PublicObjectId(id=contact_id),
                types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=204)],
            )
        ],
        object_write_trace_id=trace,
    )


def create_tasks(client: HubSpot, inputs: list[SimplePublicObjectBatchInputForCreate]) -> Any:
    batch = BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
    return client.crm.objects.tasks.batch_api.create(
        batch_input_simple_public_object_batch_input_for_create=batch
    )


def update_contacts(client: HubSpot, updates: dict[str, dict[str, str]]) -> Any:
    batch = BatchInputSimplePublicObjectBatchInput(
        inputs=[SimplePublicObjectBatchInput(id=i, properties=p) for i, p in updates.items()]
    )
    return client.crm.contacts.batch_api.update(batch_input_simple_public_object_batch_input=batch)


# ----------------------------------------------------------------------------- reads


def test_get_page_returns_every_contact_once_in_id_order(store: HubSpotStore, client: HubSpot) -> None:
    ids = seed_contacts(store, 350, lifecyclestage="lead")
    store.archive_contact(ids[10])
    seen, after, pages = [], None, 0
    while True:
        page = client.crm.contacts.basic_api.get_page(
            limit=100, after=after, properties=["email", "lifecyclestage"]
        )
        seen += [r.id for r in page.results]
        pages += 1
        assert all(r.properties["lifecyclestage"] == "lead" for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
    assert pages == 4
    assert seen == [i for i in ids if i != ids[10]]
    assert len(client.crm.contacts.get_all()) == 349


def test_search_filters_sorts_and_pages_with_the_offset_cursor(store: HubSpotStore, client: HubSpot) -> None:
    ids = seed_contacts(store, 40, lifecyclestage="lead")
    for i in ids[::2]:
        store.update_contact(
            i, {"lifecyclestage": "marketingqualifiedlead"}, at=T0 + timedelta(days=1, minutes=int(i))
        )
    since = str(int((T0 + timedelta(days=1)).timestamp() * 1000))
    found, after, totals = [], None, set()
    while True:
        req = PublicObjectSearchRequest(
            filter_groups=[
                {
                    "filters": [
                        {
                            "propertyName": "lifecyclestage",
                            "operator": "EQ",
                            "value": "marketingqualifiedlead",
                        },
                        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": since},
                    ]
                }
            ],
            sorts=[{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
            properties=["email", "lifecyclestage"],
            limit=7,
            after=after,
        )
        page = client.crm.contacts.search_api.do_search(public_object_search_request=req)
        totals.add(page.total)
        found += [r.id for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert totals == {20}
    assert found == list(reversed(ids[::2]))
    email_hit = client.crm.contacts.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(
            filter_groups=[
                {"filters": [{"propertyName": "email", "operator": "EQ", "value": "P3@EXAMPLE.COM"}]}
            ]
        )
    )
    assert [r.id for r in email_hit.results] == [ids[3]]


def test_search_refuses_to_page_past_10000_results(store: HubSpotStore, client: HubSpot) -> None:
    ids = seed_contacts(store, 10_050)
    api = client.crm.contacts.search_api
    ok = api.do_search(public_object_search_request=PublicObjectSearchRequest(limit=200, after="9800"))
    assert ok.total == 10_050 and ok.results[0].id == ids[9800] and ok.paging.next.after == "10000"
    with pytest.raises(ContactsApiException) as exc:
        api.do_search(public_object_search_request=PublicObjectSearchRequest(limit=200, after="9900"))
    assert exc.value.status == 400
    assert json.loads(exc.value.body)["category"] == "VALIDATION_ERROR"
    window = api.do_search(
        public_object_search_request=PublicObjectSearchRequest(
            filter_groups=[
                {"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": ids[9999]}]}
            ],
            sorts=["hs_object_id"],
            limit=100,
        )
    )
    assert window.total == 50 and [r.id for r in window.results] == ids[10_000:]


def test_search_rejects_too_many_filters(client: HubSpot) -> None:
    groups = [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}] * 4} for _ in range(5)]
    with pytest.raises(ContactsApiException) as exc:
        client.crm.contacts.search_api.do_search(
            public_object_search_request=PublicObjectSearchRequest(filter_groups=groups)
        )
    assert exc.value.status == 400 and "filters" in json.loads(exc.value.body)["message"]


def test_batch_read_reports_missing_ids_with_207(store: HubSpotStore, client: HubSpot) -> None:
    ids = seed_contacts(store, 3)
    store.update_contact(ids[0], {"lifecyclestage": "lead"}, at=T0 + timedelta(hours=1))
    store.update_contact(ids[0], {"lifecyclestage": "customer"}, at=T0 + timedelta(hours=2))
    batch = BatchReadInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id=ids[0]), SimplePublicObjectId(id="999999")],
        properties=["lifecyclestage"],
        properties_with_history=["lifecyclestage"],
    )
    out = client.crm.contacts.batch_api.read(batch_read_input_simple_public_object_id=batch)
    assert [r.id for r in out.results] == [ids[0]]
    history = out.results[0].properties_with_history["lifecyclestage"]
    assert [h.value for h in history] == ["customer", "lead"]
    assert out.num_errors == 1 and out.errors[0].context == {"ids": ["999999"]}
    assert "hs_lifecyclestage_customer_date" not in out.results[0].properties  # not requested
    assert store.contact(ids[0])["hs_lifecyclestage_customer_date"] == "2026-11-20T12:00:00.000Z"


def test_owners_filter_by_archived_and_email(store: HubSpotStore, client: HubSpot) -> None:
    active = store.add_owner("ann@example.com", "Ann", "Lee")
    gone = store.add_owner("bob@example.com", "Bob", "Ray", archived=True)
    api = client.crm.owners.owners_api
    assert [o.id for o in api.get_page().results] == [active]
    assert [o.id for o in api.get_page(archived=True).results] == [gone]
    assert api.get_page(email="ann@example.com").results[0].first_name == "Ann"


# ----------------------------------------------------------------------------- writes


def test_task_batch_create_reports_partial_failures_per_trace_id(
    store: HubSpotStore, client: HubSpot
) -> None:
    sandbox_faults = Faults(reject_property_values={"hs_task_subject": {"REJECT-ME"}})
    sb = HubSpotSandbox(store, faults=sandbox_faults)
    sb.start()
    try:
        api = HubSpot(access_token=sb.token, host=sb.base_url)
        (contact,) = seed_contacts(store, 1)
        out = create_tasks(
            api,
            [
                task_input("Call Ann", contact, "key-1", hs_task_priority="HIGH"),
                task_input("REJECT-ME please", contact, "key-2"),
                task_input("Ghost contact", "424242", "key-3"),
            ],
        )
    finally:
        sb.stop()
    assert type(out).__name__ == "BatchResponseSimplePublicObjectWithErrors"
    assert [r.object_write_trace_id for r in out.results] == ["key-1"]
    assert sorted(e.context["objectWriteTraceId"][0] for e in out.errors) == ["key-2", "key-3"]
    assert all(e.category == "VALIDATION_ERROR" for e in out.errors)
    (task,) = store.tasks()
    assert task["properties"]["hs_task_subject"] == "Call Ann"
    assert task["associations"] == {"contacts": [contact]}
    assert store.associations("contacts", contact, "tasks") == {task["id"]: 203}


def test_batch_without_trace_ids_is_all_or_nothing(store: HubSpotStore, client: HubSpot) -> None:
    (contact,) = seed_contacts(store, 1)
    with pytest.raises(TasksApiException) as exc:
        create_tasks(
            client, [task_input("ok", contact, None), task_input("bad", contact, None, hs_task_type="FAX")]
        )
    assert exc.value.status == 400 and "INVALID_OPTION" in exc.value.body
    assert store.tasks() == []


def test_associations_v4_batch_read(store: HubSpotStore, client: HubSpot) -> None:
    a, b = seed_contacts(store, 2)
    create_tasks(client, [task_input("t1", a, "k1"), task_input("t2", a, "k2")])
    batch = BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[PublicFetchAssociationsBatchRequest(id=a), PublicFetchAssociationsBatchRequest(id=b)]
    )
    out = client.crm.associations.v4.batch_api.get_page("contacts", "tasks", batch)
    (result,) = out.results
    assert result._from.id == a
    assert sorted(t.to_object_id for t in result.to) == sorted(t["id"] for t in store.tasks())
    assert result.to[0].association_types[0].type_id == 203
    assert out.errors[0].context == {"fromObjectId": [b]}


def test_lifecycle_stage_only_moves_forward_unless_cleared(store: HubSpotStore, client: HubSpot) -> None:
    (cid,) = seed_contacts(store, 1, lifecyclestage="salesqualifiedlead")
    with pytest.raises(ContactsApiException) as exc:
        update_contacts(client, {cid: {"lifecyclestage": "lead"}})
    assert exc.value.status == 400 and "backward" in json.loads(exc.value.body)["message"]
    assert store.contact(cid)["lifecyclestage"] == "salesqualifiedlead"
    update_contacts(client, {cid: {"lifecyclestage": ""}})
    assert "lifecyclestage" not in store.contact(cid)
    update_contacts(client, {cid: {"lifecyclestage": "lead", "hs_lead_status": "NEW"}})
    assert store.contact(cid)["lifecyclestage"] == "lead"
    assert store.contact(cid)["hs_lifecyclestage_lead_date"].endswith("Z")
    update_contacts(client, {cid: {"lifecyclestage": "opportunity"}})
    assert store.contact(cid)["lifecyclestage"] == "opportunity"


def test_property_validation_errors(store: HubSpotStore, client: HubSpot) -> None:
    (cid,) = seed_contacts(store, 1)
    with pytest.raises(ContactsApiException) as exc:
        update_contacts(client, {cid: {"no_such_field": "x"}})
    assert exc.value.status == 400 and "PROPERTY_DOESNT_EXIST" in exc.value.body
    with pytest.raises(ContactsApiException) as exc:
        update_contacts(client, {cid: {"hs_lead_status": "MAYBE"}})
    assert "INVALID_OPTION" in exc.value.body
    assert "hs_lead_status" not in store.contact(cid)


def test_unique_property_conflict_rejects_the_record(store: HubSpotStore, client: HubSpot) -> None:
    (cid,) = seed_contacts(store, 1)
    prop = PropertyCreate(
        name="handoff_key", label="Handoff key", type="string", field_type="text",
        group_name="taskinformation", has_unique_value=True,
    )  # fmt: skip
    created = client.crm.properties.core_api.create("tasks", prop)
    assert created.has_unique_value is True
    with pytest.raises(PropertiesApiException) as exc:
        client.crm.properties.core_api.create("tasks", prop)
    assert exc.value.status == 409
    assert "handoff_key" in [p.name for p in client.crm.properties.core_api.get_all("tasks").results]
    create_tasks(client, [task_input("first", cid, "k1", handoff_key="lead-1")])
    out = create_tasks(
        client,
        [
            task_input("dupe", cid, "k2", handoff_key="lead-1"),
            task_input("fresh", cid, "k3", handoff_key="lead-2"),
        ],
    )
    assert [r.properties["handoff_key"] for r in out.results] == ["lead-2"]
    (error,) = out.errors
    assert error.category == "CONFLICT" and "handoff_key" in error.message
    assert error.context["objectWriteTraceId"] == ["k2"]
    assert sorted(t["properties"]["hs_task_subject"] for t in store.tasks()) == ["first", "fresh"]


def test_upsert_by_unique_property_is_idempotent(store: HubSpotStore, client: HubSpot) -> None:
    from hubspot.crm.objects.tasks import (
        BatchInputSimplePublicObjectBatchInputUpsert,
        SimplePublicObjectBatchInputUpsert,
    )

    prop = PropertyCreate(
        name="handoff_key", label="Handoff key", type="string", field_type="text",
        group_name="taskinformation", has_unique_value=True,
    )  # fmt: skip
    client.crm.properties.core_api.create("tasks", prop)

    def upsert(subject: str) -> Any:
        item = SimplePublicObjectBatchInputUpsert(
            id="lead-7",
            id_property="handoff_key",
            properties={"hs_task_subject": subject, "hs_timestamp": "1795687200000"},
        )
        batch = BatchInputSimplePublicObjectBatchInputUpsert(inputs=[item])
        return client.crm.objects.tasks.batch_api.upsert(
            batch_input_simple_public_object_batch_input_upsert=batch
        )

    first, second = upsert("Call"), upsert("Call again")
    assert first.results[0].new is True and second.results[0].new is False
    assert first.results[0].id == second.results[0].id
    (task,) = store.tasks()
    assert task["properties"]["hs_task_subject"] == "Call again"
    assert task["properties"]["hs_timestamp"] == "2026-11-26T10:00:00.000Z"  # epoch ms in, ISO out
    assert task["associations"] == {"contacts": []}


# ----------------------------------------------------------------------------- events


def test_events_and_email_events(store: HubSpotStore, client: HubSpot) -> None:
    (cid,) = seed_contacts(store, 1)
    for i in range(5):
        store.add_event("pe12345_pricing_viewed", cid, T0 + timedelta(hours=i), {"hs_url": f"/p{i}"})
    store.add_event("other", cid, T0)
    store.add_email_event("p0@example.com", "CLICK", T0, url="https://example.com/roi")
    store.add_email_event("p0@example.com", "OPEN", T0)
    page = client.events.events_api.get_page(
        object_type="contact",
        event_type="pe12345_pricing_viewed",
        occurred_after=T0 + timedelta(hours=1),
        limit=3,
    )
    assert [e.properties["hs_url"] for e in page.results] == ["/p1", "/p2", "/p3"]
    assert page.results[0].object_id == cid
    rest = client.events.events_api.get_page(
        object_type="contact", event_type="pe12345_pricing_viewed", after=page.paging.next.after
    )
    assert [e.properties["hs_url"] for e in rest.results] == ["/p4"] and rest.paging is None
    start = int(T0.timestamp() * 1000)
    resp = client.api_request(
        {
            "method": "GET",
            "path": "/email/public/v1/events",
            "qs": {"eventType": "CLICK", "startTimestamp": start},
        }
    )
    body = resp.json()
    assert resp.status_code == 200 and body["hasMore"] is False
    assert [(e["type"], e["url"], e["created"]) for e in body["events"]] == [
        ("CLICK", "https://example.com/roi", start)
    ]


# ----------------------------------------------------------------------------- auth, limits, faults


def test_missing_or_wrong_token_is_401(sandbox: HubSpotSandbox) -> None:
    for token in (None, "wrong"):
        api = HubSpot(access_token=token, host=sandbox.base_url)
        with pytest.raises(OwnersApiException) as exc:
            api.crm.owners.owners_api.get_page()
        assert exc.value.status == 401
        assert json.loads(exc.value.body)["category"] == "INVALID_AUTHENTICATION"


def test_rate_limit_headers_on_api_calls_but_not_search(store: HubSpotStore, client: HubSpot) -> None:
    seed_contacts(store, 2)
    _, status, headers = client.crm.contacts.basic_api.get_page_with_http_info()
    assert status == 200
    assert headers["X-HubSpot-RateLimit-Max"] == "190"
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert int(headers["X-HubSpot-RateLimit-Remaining"]) == 189
    assert headers["X-HubSpot-RateLimit-Daily"] == "1000000"
    _, _, search_headers = client.crm.contacts.search_api.do_search_with_http_info(
        public_object_search_request=PublicObjectSearchRequest()
    )
    assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in search_headers)


def test_injected_429_carries_policy_and_retry_after(sandbox: HubSpotSandbox, client: HubSpot) -> None:
    resp = requests.post(f"{sandbox.base_url}/__sandbox/faults", json={"rate_limit_every": 2}, timeout=5)
    assert resp.json()["rate_limit_every"] == 2
    search = client.crm.contacts.search_api
    search.do_search(public_object_search_request=PublicObjectSearchRequest())
    with pytest.raises(ContactsApiException) as exc:  # urllib3 never retries a POST by default
        search.do_search(public_object_search_request=PublicObjectSearchRequest())
    assert exc.value.status == 429
    body = json.loads(exc.value.body)
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
    assert exc.value.headers["Retry-After"] in ("0", "1")
    client.crm.owners.owners_api.get_page()  # call 3 passes
    client.crm.owners.owners_api.get_page()  # call 4 gets a 429 that urllib3 retries (call 5)
    calls = requests.get(f"{sandbox.base_url}/__sandbox/calls", timeout=5).json()
    assert calls == {"POST /crm/v3/objects/contacts/search": 2, "GET /crm/v3/owners": 3}
    assert sandbox.calls == calls


def test_server_error_burst_then_recovery(sandbox: HubSpotSandbox, client: HubSpot) -> None:
    sandbox.faults.update({"server_error_burst": 3})
    statuses = []
    for _ in range(4):
        try:
            client.crm.owners.owners_api.get_page()
            statuses.append(200)
        except OwnersApiException as err:
            statuses.append(err.status)
    assert statuses == [502, 503, 504, 200]


def test_enforced_limits_429_search_per_second_and_daily(store: HubSpotStore) -> None:
    sb = HubSpotSandbox(store, enforce_rate_limits=True)
    sb.start()
    try:
        api = HubSpot(access_token=sb.token, host=sb.base_url)
        outcomes = []
        started = time.monotonic()
        for _ in range(6):
            try:
                api.crm.contacts.search_api.do_search(
                    public_object_search_request=PublicObjectSearchRequest()
                )
                outcomes.append("ok")
            except ContactsApiException as err:
                assert err.headers["Retry-After"] == "1"
                outcomes.append(json.loads(err.body)["policyName"])
        if time.monotonic() - started < 1:
            assert outcomes == ["ok"] * 5 + ["SECONDLY"]
        sb.faults.daily_limit = 6  # 5 searches + 1 page admitted so far after the next call
        api.crm.contacts.basic_api.get_page()
        with pytest.raises(ContactsApiException) as exc:
            api.crm.contacts.basic_api.get_page()
        assert exc.value.status == 429 and json.loads(exc.value.body)["policyName"] == "DAILY"
        assert exc.value.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
        assert "Retry-After" not in exc.value.headers
    finally:
        sb.stop()


# ----------------------------------------------------------------------------- persistence


def test_save_and_load_round_trip(store: HubSpotStore, tmp_path: object) -> None:
    owner = store.add_owner("ann@example.com", "Ann", "Lee")
    (cid,) = seed_contacts(store, 1, lifecyclestage="lead", hubspot_owner_id=owner)
    store.update_contact(cid, {"lifecyclestage": "marketingqualifiedlead"}, at=T0 + timedelta(days=1))
    store.add_engagement("meetings", {"hs_meeting_title": "Demo"}, [cid])
    store.add_event("pe1_viewed", cid, T0)
    path = f"{tmp_path}/hubspot.json"
    store.save(path)
    loaded = HubSpotStore.load(path)
    assert loaded.contacts() == store.contacts()
    assert loaded.objects("meetings") == store.objects("meetings")
    assert loaded.owners() == store.owners()
    sb = HubSpotSandbox(loaded)
    sb.start()
    try:
        api = HubSpot(access_token=sb.token, host=sb.base_url)
        page = api.crm.contacts.basic_api.get_page(properties_with_history=["lifecyclestage"])
        history = page.results[0].properties_with_history["lifecyclestage"]
        assert [h.value for h in history] == ["marketingqualifiedlead", "lead"]
        assert len(api.events.events_api.get_page(object_type="contact").results) == 1
        assert loaded.add_contact({"email": "new@example.com"}) != cid
    finally:
        sb.stop()
