"""The Salesforce sandbox, driven through simple-salesforce over real HTTPS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from simple_salesforce import Salesforce, format_external_id, format_soql
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connectors.salesforce.sandbox import Faults, RecordError, SalesforceSandbox, SalesforceStore

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


class Clock:
    """A settable clock for the store."""

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
    """The shared server, reset to a fresh store, counters and faults."""
    server.store = store
    server.faults = Faults(timeout_seconds=0.5)
    server.calls.clear()
    server.api_usage = 0
    return server


def client(box: SalesforceSandbox, token: str | None = None) -> Salesforce:
    session = requests.Session()
    session.verify = box.ca_bundle
    session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides session.verify
    return Salesforce(
        instance_url=box.instance_url,
        session_id=token or box.token,
        version="62.0",
        session=session,
    )


@pytest.fixture
def sf(sandbox: SalesforceSandbox) -> Salesforce:
    return client(sandbox)


def add_leads(store: SalesforceStore, n: int, at: datetime = T0, **extra: object) -> list[str]:
    return [
        store.insert("Lead", {"LastName": f"Lead{i}", "Company": "Acme", **extra}, at=at) for i in range(n)
    ]


def error_code(exc: pytest.ExceptionInfo[Exception]) -> str:
    return str(exc.value.content[0]["errorCode"])  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- queries


def test_query_all_iter_returns_every_lead_once_across_pages(sandbox, sf, store):
    ids = add_leads(store, 5000)
    seen = [r["Id"] for r in sf.query_all_iter("SELECT Id, Name, Status FROM Lead")]
    assert len(seen) == 5000
    assert set(seen) == set(ids)
    assert sandbox.calls["GET /query"] == 1
    assert sandbox.calls["GET /query/{locator}"] == 2  # 2,000-record pages


def test_next_records_url_paging_honours_batch_size(sandbox, sf, store):
    add_leads(store, 1200)
    page = sf.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": "batchSize=500"})
    assert page["totalSize"] == 1200 and not page["done"] and len(page["records"]) == 500
    assert page["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
    records = list(page["records"])
    while not page["done"]:
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
        records += page["records"]
    assert len({r["Id"] for r in records}) == 1200
    assert records[0]["attributes"] == {
        "type": "Lead",
        "url": f"/services/data/v62.0/sobjects/Lead/{records[0]['Id']}",
    }


def test_watermark_query_with_shared_modstamps_and_limit(sf, store):
    early = add_leads(store, 3, at=T0 - timedelta(hours=2))
    later = add_leads(store, 6, at=T0 - timedelta(hours=1))
    store.set_bulk_modstamp("Lead", later[:4], T0 - timedelta(minutes=30))
    since = T0 - timedelta(minutes=30)
    soql = format_soql(
        "SELECT Id, SystemModstamp FROM Lead WHERE SystemModstamp >= {} ORDER BY SystemModstamp, Id LIMIT 3",
        since,
    )
    result = sf.query(soql)
    assert [r["Id"] for r in result["records"]] == sorted(later[:4])[:3]
    assert result["records"][0]["SystemModstamp"] == "2026-11-20T09:30:00.000+0000"
    keyset = format_soql(
        "SELECT Id FROM Lead WHERE (SystemModstamp = {} AND Id > {}) OR SystemModstamp > {} "
        "ORDER BY SystemModstamp, Id",
        since,
        sorted(later[:4])[2],
        since,
    )
    assert [r["Id"] for r in sf.query(keyset)["records"]] == [sorted(later[:4])[3]]
    older = sf.query(
        "SELECT Id FROM Lead WHERE SystemModstamp < 2026-11-20T09:30:00.000+0000 "
        "ORDER BY SystemModstamp DESC, Id DESC"
    )
    assert [r["Id"] for r in older["records"]] == sorted(later[4:], reverse=True) + sorted(
        early, reverse=True
    )


@pytest.mark.parametrize(
    "value",
    ["O'Brien", "x' OR Name LIKE '%", 'quote " and \\ backslash', "tab\there", "50% off_"],
)
def test_injection_looking_values_match_literally(sf, store, value):
    target = store.insert("Lead", {"LastName": value, "Company": "Acme"})
    store.insert("Lead", {"LastName": "Someone Else", "Company": "Acme"})
    result = sf.query(format_soql("SELECT Id, LastName FROM Lead WHERE LastName = {}", value))
    assert [(r["Id"], r["LastName"]) for r in result["records"]] == [(target, value)]
    like = sf.query(format_soql("SELECT Id FROM Lead WHERE LastName LIKE '{:like}%'", value))
    assert [r["Id"] for r in like["records"]] == [target]


def test_where_operators_and_relationship_fields(sf, store):
    owner = store.insert("User", {"Username": "r@x.io", "Email": "r@x.io", "LastName": "Rep"})
    a = store.insert("Lead", {"LastName": "A", "Company": "Acme", "NumberOfEmployees": 50, "OwnerId": owner})
    b = store.insert("Lead", {"LastName": "B", "Company": "Beta", "Status": "Nurture"})
    soql = format_soql(
        "SELECT Id, Owner.Email FROM Lead WHERE NOT (Status IN {}) OR (NumberOfEmployees >= 10 "
        "AND company like 'ac%' AND Email = null) ORDER BY LastName DESC",
        ["Open - Not Contacted"],
    )
    records = sf.query(soql)["records"]
    assert [r["Id"] for r in records] == [b, a]
    assert records[1]["Owner"]["Email"] == "r@x.io"
    count = sf.query("SELECT COUNT() FROM Lead WHERE Status != 'Nurture'")
    assert count["totalSize"] == 1 and count["records"] == []


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE LastName = 'a' AND Company = 'b' OR Title = 'c'", "MALFORMED_QUERY"),
        ("SELECT Nope__c FROM Lead", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE SystemModstamp > '2024-01-01'", "INVALID_FIELD"),
        ("SELECT Id FROM Nope", "INVALID_TYPE"),
    ],
)
def test_bad_queries_are_400_with_salesforce_error_codes(sf, soql, code):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(soql)
    assert error_code(exc) == code


def test_query_all_includes_soft_deleted(sf, store):
    gone, kept = add_leads(store, 2)
    sf.Lead.delete(gone)
    assert [r["Id"] for r in sf.query("SELECT Id FROM Lead")["records"]] == [kept]
    everything = sf.query_all("SELECT Id, IsDeleted FROM Lead", include_deleted=True)["records"]
    assert {(r["Id"], r["IsDeleted"]) for r in everything} == {(gone, True), (kept, False)}


# ---------------------------------------------------------------------------- replication


def test_updated_and_deleted_replication_resources(sf, store, clock):
    lead_a, lead_b = add_leads(store, 2, at=T0 - timedelta(hours=3))
    store.update("Lead", lead_a, {"Title": "CTO"}, at=T0 - timedelta(hours=1))
    store.delete("Lead", lead_b, at=T0 - timedelta(minutes=20))
    clock.now = T0 + timedelta(seconds=42)
    start = datetime(2026, 11, 20, 11, 0, tzinfo=UTC) - timedelta(hours=3)  # tz-aware, other tz ok
    updated = sf.Lead.updated(start - timedelta(hours=1), T0 + timedelta(hours=1))
    assert updated == {"ids": [lead_a], "latestDateCovered": "2026-11-20T10:00:00.000+0000"}
    deleted = sf.Lead.deleted(T0 - timedelta(days=1), T0)
    assert deleted["deletedRecords"] == [{"id": lead_b, "deletedDate": "2026-11-20T09:40:00.000+0000"}]
    assert deleted["earliestDateAvailable"] == "2026-11-05T10:00:00.000+0000"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Lead.deleted(T0 - timedelta(days=16), T0)
    assert error_code(exc) == "INVALID_REPLICATION_DATE"


# ---------------------------------------------------------------------------- writes


def handoff_task(lead_id: str, key: str, **extra: object) -> dict[str, object]:
    return {
        "attributes": {"type": "Task"},
        "Subject": "Follow up",
        "WhoId": lead_id,
        "Handoff_Key__c": key,
        **extra,
    }


def test_collections_upsert_on_handoff_key_is_idempotent(sandbox, sf, store):
    leads = add_leads(store, 3)
    body = {"allOrNone": False, "records": [handoff_task(lid, f"k-{lid}") for lid in leads]}
    first = sf.restful("composite/sobjects/Task/Handoff_Key__c", method="PATCH", json=body)
    second = sf.restful("composite/sobjects/Task/Handoff_Key__c", method="PATCH", json=body)
    assert [r["created"] for r in first] == [True] * 3
    assert [r["created"] for r in second] == [False] * 3
    assert [r["id"] for r in first] == [r["id"] for r in second]
    tasks = store.all("Task")
    assert sorted(t["Handoff_Key__c"] for t in tasks) == sorted(f"k-{lid}" for lid in leads)
    assert {t["Status"] for t in tasks} == {"Not Started"}
    assert {t["OwnerId"] for t in tasks} == {store.integration_user_id}
    assert sandbox.calls["PATCH /composite/sobjects/{sobject}/{field}"] == 2


def test_per_record_errors_do_not_block_the_rest_of_the_batch(sf, store):
    inactive = store.insert(
        "User", {"Username": "old@x.io", "Email": "old@x.io", "LastName": "Old", "IsActive": False}
    )
    account = store.insert("Account", {"Name": "Acme"})
    good, converted, other = add_leads(store, 3)
    store.convert_lead(converted)
    records = [
        handoff_task(good, "ok-1"),
        handoff_task(good, "bad-what", WhatId=account),
        handoff_task(other, "bad-owner", OwnerId=inactive),
        handoff_task(other, "bad-status", Status="Done-ish"),
    ]
    results = sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert [r["success"] for r in results] == [True, False, False, False]
    codes = [r["errors"][0]["statusCode"] for r in results[1:]]
    assert codes == [
        "FIELD_INTEGRITY_EXCEPTION",
        "INACTIVE_OWNER_OR_USER",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    ]
    assert [t["Handoff_Key__c"] for t in store.all("Task")] == ["ok-1"]
    updates = [
        {"attributes": {"type": "Lead"}, "id": good, "Handoff_Status__c": "sent"},
        {"attributes": {"type": "Lead"}, "id": converted, "Handoff_Status__c": "sent"},
        {"attributes": {"type": "Lead"}, "id": other, "Nope__c": 1},
    ]
    results = sf.restful("composite/sobjects", method="PATCH", json={"records": updates})
    assert [r["success"] for r in results] == [True, False, False]
    assert results[1]["errors"][0]["statusCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert results[2]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert store.get("Lead", good)["Handoff_Status__c"] == "sent"


def test_all_or_none_rolls_back_every_record(sf, store):
    lead = add_leads(store, 1)[0]
    store.insert("Task", {"WhoId": lead, "Handoff_Key__c": "taken"})
    records = [handoff_task(lead, "new-1"), handoff_task(lead, "taken")]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert [r["errors"][0]["statusCode"] for r in results] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "DUPLICATE_VALUE",
    ]
    assert [t["Handoff_Key__c"] for t in store.all("Task")] == ["taken"]


def test_collections_delete_and_retrieve(sf, store):
    a, b = add_leads(store, 2)
    fetched = sf.restful("composite/sobjects/Lead", params={"ids": f"{a},{b}", "fields": "Id,Name"})
    assert [r["Name"] for r in fetched] == ["Lead0", "Lead1"]
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{a},{a}"})
    assert [r["success"] for r in deleted] == [True, False]
    assert deleted[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert store.get("Lead", a)["IsDeleted"] and not store.get("Lead", b)["IsDeleted"]


def test_collections_over_200_records_fail_whole_call(sf, store):
    lead = add_leads(store, 1)[0]
    records = [handoff_task(lead, f"k{i}") for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert store.all("Task") == []


def test_single_record_crud_and_external_id_upsert(sf, store):
    created = sf.Lead.create({"LastName": "Ng", "Company": "Acme", "Email": "ng@acme.io"})
    assert created["success"] and created["id"].startswith("00Q") and len(created["id"]) == 18
    assert sf.Lead.get(created["id"])["Status"] == "Open - Not Contacted"
    assert sf.Lead.update(created["id"], {"Title": "VP"}) == 204
    assert store.get("Lead", created["id"])["Title"] == "VP"
    path = format_external_id("HubSpot_Contact_Id__c", "hs/1 2")
    assert sf.Lead.upsert(path, {"LastName": "Hs", "Company": "Beta"}) == 201
    assert sf.Lead.upsert(path, {"Title": "CEO"}) == 204
    [hs] = [lead for lead in store.all("Lead") if lead["HubSpot_Contact_Id__c"] == "hs/1 2"]
    assert hs["Title"] == "CEO"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Lead.create({"LastName": "NoCompany"})
    assert error_code(exc) == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Lead.create({"LastName": "Dup", "Company": "C", "HubSpot_Contact_Id__c": "hs/1 2"})
    assert error_code(exc) == "DUPLICATE_VALUE"
    assert sf.Lead.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.get(created["id"])


def test_store_validation_matches_the_api(store):
    with pytest.raises(RecordError) as exc:
        store.insert("Lead", {"LastName": "x", "Company": "c" * 256})
    assert exc.value.status_code == "STRING_TOO_LONG"
    with pytest.raises(RecordError) as exc:
        store.insert("Task", {"WhoId": "00Q5g0000000099AAA"})
    assert exc.value.status_code == "INVALID_CROSS_REFERENCE_KEY"
    opp = store.insert("Opportunity", {"Name": "Big", "StageName": "Closed Won", "CloseDate": "2026-12-01"})
    assert store.get("Opportunity", opp)["IsWon"] is True
    campaign = store.insert("Campaign", {"Name": "Webinar", "Type": "Webinar"})
    lead = add_leads(store, 1)[0]
    member = store.insert("CampaignMember", {"CampaignId": campaign, "LeadId": lead, "Status": "Attended"})
    assert store.get("CampaignMember", member)["HasResponded"] is True


# ---------------------------------------------------------------------------- auth, limits, faults


def test_missing_or_bad_token_is_401(sandbox):
    with pytest.raises(SalesforceExpiredSession) as exc:
        client(sandbox, token="wrong").query("SELECT Id FROM Lead")
    assert error_code(exc) == "INVALID_SESSION_ID"
    raw = requests.get(f"{sandbox.instance_url}/services/data/v62.0/limits/", verify=sandbox.ca_bundle)
    assert raw.status_code == 401
    assert raw.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_daily_limit_and_limit_info_header(store):
    box = SalesforceSandbox(store, daily_api_limit=3)
    box.start()
    try:
        sf = client(box)
        sf.query("SELECT Id FROM Lead")
        assert sf.api_usage["api-usage"].used == 1 and sf.api_usage["api-usage"].total == 3
        limits = sf.limits()
        assert limits["DailyApiRequests"] == {"Max": 3, "Remaining": 1}
        sf.query("SELECT Id FROM Lead")
        with pytest.raises(SalesforceRefusedRequest) as exc:
            sf.query("SELECT Id FROM Lead")
        assert error_code(exc) == "REQUEST_LIMIT_EXCEEDED"
        assert box.api_usage == 3
    finally:
        box.stop()


def test_faults_lock_server_error_session_and_admin(sandbox, sf, store):
    lead = add_leads(store, 1)[0]
    state = requests.post(
        f"{sandbox.instance_url}/__sandbox/faults",
        json={"lock_error_next": 1, "server_error_burst": 1, "expire_session_next": 1},
        verify=sandbox.ca_bundle,
    ).json()
    assert state["lock_error_next"] == 1
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.query("SELECT Id FROM Lead")
    assert exc.value.status == 503
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Lead")
    body = {"records": [handoff_task(lead, "a"), handoff_task(lead, "b")]}
    locked = sf.restful("composite/sobjects/Task/Handoff_Key__c", method="PATCH", json=body)
    assert {r["errors"][0]["statusCode"] for r in locked} == {"UNABLE_TO_LOCK_ROW"}
    assert store.all("Task") == []
    sandbox.faults.reject_field_values = {"Subject": {"Forbidden"}}
    sandbox.faults.duplicate_rule_emails = {"dupe@x.io"}
    body = {"records": [handoff_task(lead, "a"), handoff_task(lead, "c", Subject="Forbidden")]}
    results = sf.restful("composite/sobjects/Task/Handoff_Key__c", method="PATCH", json=body)
    assert [r["success"] for r in results] == [True, False]
    assert results[1]["errors"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Lead.create({"LastName": "D", "Company": "C", "Email": "DUPE@x.io"})
    assert error_code(exc) == "DUPLICATES_DETECTED"
    admin = requests.get(f"{sandbox.instance_url}/__sandbox/state", verify=sandbox.ca_bundle).json()
    assert admin["counts"]["Task"] == 1 and admin["calls"]["GET /query"] == 2


def test_timeout_fault_sleeps_then_processes(sandbox, sf, store):
    sandbox.faults.timeout_next = 1
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.restful("sobjects/Lead/", method="POST", json={"LastName": "Slow"}, timeout=0.2)
    time.sleep(0.5)
    assert store.all("Lead") == []  # LastName alone fails validation, but only after the sleep
    sandbox.faults.timeout_next = 1
    body = {"LastName": "Slow", "Company": "Acme"}
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.restful("sobjects/Lead/", method="POST", json=body, timeout=0.2)
    deadline = time.monotonic() + 3
    while not store.all("Lead") and time.monotonic() < deadline:
        time.sleep(0.05)  # the server finishes the write after the client gave up
    assert [lead["LastName"] for lead in store.all("Lead")] == ["Slow"]


def test_oauth_client_credentials_and_refresh(sandbox):
    url = f"{sandbox.instance_url}/services/oauth2/token"
    ok = requests.post(
        url,
        data={"grant_type": "client_credentials"},
        auth=(sandbox.client_id, sandbox.client_secret),
        verify=sandbox.ca_bundle,
    ).json()
    assert ok["token_type"] == "Bearer" and ok["instance_url"] == sandbox.instance_url
    assert client(sandbox, token=ok["access_token"]).query("SELECT COUNT() FROM User")["totalSize"] == 1
    refreshed = requests.post(
        url,
        data={"grant_type": "refresh_token", "client_id": sandbox.client_id,
              "refresh_token": sandbox.refresh_token},
        verify=sandbox.ca_bundle,
    )  # fmt: skip
    assert refreshed.status_code == 200 and refreshed.json()["access_token"]
    bad = requests.post(
        url,
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
        verify=sandbox.ca_bundle,
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"


# ---------------------------------------------------------------------------- describe, persistence, bulk


def test_describe_exposes_picklists_and_custom_fields(sf):
    lead = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    status = [p["value"] for p in lead["Status"]["picklistValues"]]
    assert "Marketing Qualified" in status and "Closed - Converted" in status
    assert lead["HubSpot_Contact_Id__c"]["externalId"] and lead["HubSpot_Contact_Id__c"]["unique"]
    stages = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}["StageName"]
    assert [p["value"] for p in stages["picklistValues"]][-2:] == ["Closed Won", "Closed Lost"]
    task = {f["name"]: f for f in sf.Task.describe()["fields"]}
    defaults = {p["value"] for p in task["Priority"]["picklistValues"] if p["defaultValue"]}
    assert defaults == {"Normal"} and task["Handoff_Key__c"]["length"] == 80


def test_save_and_load_round_trip(tmp_path, store):
    lead, gone = add_leads(store, 2, Email="a@b.io")
    store.delete("Lead", gone)
    converted = store.convert_lead(lead, opportunity={"Amount": 1000})
    assert converted["IsConverted"] and converted["Status"] == "Closed - Converted"
    path = tmp_path / "sf.json"
    store.save(path)
    loaded = SalesforceStore.load(path)
    for name in ("Lead", "Contact", "Account", "Opportunity", "User"):
        assert loaded.all(name, include_deleted=True) == store.all(name, include_deleted=True)
    assert loaded.deleted_log("Lead") == store.deleted_log("Lead")
    new_id = loaded.insert("Lead", {"LastName": "After", "Company": "Acme"})
    assert new_id not in {lead, gone}
    json.loads(path.read_text())  # plain JSON


def test_bulk2_query_returns_csv_pages(sf, store):
    add_leads(store, 25, Email="x@y.io")
    pages = list(sf.bulk2.Lead.query("SELECT Id, LastName, IsConverted FROM Lead", max_records=10, wait=0.01))
    assert len(pages) == 3
    lines = [line for page in pages for line in page.strip().splitlines()[1:]]
    assert len(lines) == 25 and pages[0].splitlines()[0] == '"Id","LastName","IsConverted"'
