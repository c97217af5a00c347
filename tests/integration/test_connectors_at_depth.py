"""Connector acceptance at production depth: large pulls, idle cost, faults, budget, quoting.

These run one CRM at a time through the real CLI against its sandbox, on SQLite
(the backend matrix is covered by the cycle tests; these are about the CRM side).
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings, install
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from connectors.sandbox_server import serve
from sync.cli import main
from tests.integration.conftest import mapping_dir, rep

pytestmark = pytest.mark.integration


def cli(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    for key in (
        "HUBSPOT_BASE_URL",
        "HUBSPOT_ACCESS_TOKEN",
        "SALESFORCE_INSTANCE_URL",
        "SALESFORCE_ACCESS_TOKEN",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def sync(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], cfg: Path) -> tuple[int, dict[str, Any]]:
    code, out, err = cli(monkeypatch, env, "sync", "--once", "--json", "--config", str(cfg))
    assert out.strip(), err
    return code, json.loads(out)


def mirror_ids(db: Path, crm: str) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id FROM people WHERE crm = :c"), {"c": crm}).all()
    engine.dispose()
    return [r[0] for r in rows]


# --- HubSpot ---------------------------------------------------------------------


@pytest.fixture
def hubspot(tmp_path: Path) -> Iterator[tuple[HubSpotSandbox, HubSpotStore, dict[str, str]]]:
    store = HubSpotStore()
    box = HubSpotSandbox(store)
    box.start()
    install(HubSpotConnector(HubSpotSettings.with_token(box.base_url, box.token)))
    env = {
        "HUBSPOT_BASE_URL": box.base_url,
        "HUBSPOT_ACCESS_TOKEN": box.token,
        "HANDOFF_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "HANDOFF_LOOKBACK_SECONDS": "0",
    }  # everything here was created seconds ago
    yield box, store, env
    box.stop()


def test_hubspot_25000_contacts_every_one_once_then_idle_then_changes(hubspot, monkeypatch, tmp_path):
    box, store, env = hubspot
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    store.add_owner("sam@northwind.example", "Sam", "Okafor")
    ids = [
        store.add_contact({"email": f"c{i}@x{i % 97}.example", "lastname": f"L{i}", "lifecyclestage": "lead"})
        for i in range(25_000)
    ]

    code, first = sync(monkeypatch, env, cfg)
    assert code == 0, first["errors"]
    assert first["people_pulled"]["hubspot"] == 25_000
    pulled = mirror_ids(tmp_path / "state.db", "hubspot")
    assert len(pulled) == len(set(pulled)) == 25_000 and set(pulled) == set(ids)
    assert first["api_calls_per_1000"]["hubspot"]["people_pulled"] <= 10.5  # list API: 100 a page

    box.calls.clear()
    code, idle = sync(monkeypatch, env, cfg)
    assert code == 0 and idle["people_pulled"]["hubspot"] == 0
    assert idle["api_calls"]["hubspot"] <= 5, dict(box.calls)

    changed = ids[100:400] + ids[-5:]  # past any 10,000-result search cap
    for cid in changed:
        store.update_contact(cid, {"jobtitle": "Director of IT"})
    code, third = sync(monkeypatch, env, cfg)
    assert code == 0
    assert third["people_pulled"]["hubspot"] >= len(changed)
    engine = sa.create_engine(env["HANDOFF_STATE_URL"])
    with engine.connect() as conn:
        titles = dict(conn.execute(sa.text("SELECT id, record FROM people WHERE crm = 'hubspot'")).all())
    engine.dispose()
    assert all(json.loads(titles[c])["values"]["jobtitle"] == "Director of IT" for c in changed)


def test_hubspot_contacts_changed_during_a_sync_are_picked_up_by_the_next(hubspot, monkeypatch, tmp_path):
    box, store, env = hubspot
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    store.add_owner("sam@northwind.example", "Sam", "Okafor")
    ids = [
        store.add_contact({"email": f"c{i}@y.example", "lastname": f"L{i}", "lifecyclestage": "lead"})
        for i in range(1_000)
    ]
    edits = {"n": 0}

    def change_behind_the_cursor(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/crm/v3/objects/contacts" and environ["REQUEST_METHOD"] == "GET":
            edits["n"] += 1
            if edits["n"] == 5:  # four pages (400 contacts) already read
                store.update_contact(ids[10], {"jobtitle": "Changed mid-sync"})
        return box(environ, start_response)

    server = serve(change_behind_the_cursor)
    try:
        code, _ = sync(monkeypatch, {**env, "HUBSPOT_BASE_URL": server.url}, cfg)
        assert code == 0
        code, second = sync(monkeypatch, {**env, "HUBSPOT_BASE_URL": server.url}, cfg)
    finally:
        server.stop()
    assert code == 0 and second["people_pulled"]["hubspot"] >= 1
    engine = sa.create_engine(env["HANDOFF_STATE_URL"])
    with engine.connect() as conn:
        record = conn.execute(
            sa.text("SELECT record FROM people WHERE crm='hubspot' AND id=:i"), {"i": ids[10]}
        ).scalar()
    engine.dispose()
    assert json.loads(record)["values"]["jobtitle"] == "Changed mid-sync"


def ready_contact(store: HubSpotStore, i: int, now: datetime, **extra: str) -> str:
    cid = store.add_contact(
        {
            "email": f"r{i}@acme{i}.example",
            "firstname": f"R{i}",
            "lastname": "Ready",
            "jobtitle": "VP Sales",
            "company": "Acme",
            "industry": "COMPUTER_SOFTWARE",
            "numemployees": "300",
            "country": "United States",
            "lifecyclestage": "marketingqualifiedlead",
            **extra,
        }
    )
    store.add_event("e_submitted_form", cid, now - timedelta(days=1), {"hs_title": "Request a demo"})
    return cid


def test_hubspot_faults_every_valid_handoff_once_rejections_listed(hubspot, monkeypatch, tmp_path):
    box, store, env = hubspot
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot", 600, 20)])  # capacity 30
    owner = store.add_owner("sam@northwind.example", "Sam", "Okafor")
    now = datetime.now(UTC)
    for i in range(12):
        ready_contact(store, i, now)
    bad = [ready_contact(store, 100 + i, now, firstname="Reject") for i in range(2)]
    box.faults.update(
        {
            "rate_limit_ratio": 0.33,
            "server_error_burst": 3,
            "seed": 7,
            "reject_property_values": {
                "hs_task_subject": ["Sales-ready lead: Reject Ready (Acme) - score 65"]
            },
        }
    )

    code, _ = sync(monkeypatch, env, cfg)
    assert code == 1  # some records failed, recorded
    box.faults.update({"rate_limit_ratio": 0.0})
    tasks = store.tasks()
    keys = Counter(t["properties"].get("crm_handoff_key") for t in tasks)
    assert len(keys) == 12 and max(keys.values()) == 1
    assert {t["properties"]["hubspot_owner_id"] for t in tasks} == {owner}
    code, out, _ = cli(monkeypatch, env, "status")
    assert out.count("VALIDATION_ERROR") == 2
    assert all(f"hs-{b}#1" in out for b in bad)
    sync(monkeypatch, env, cfg)  # the rejected ones are offered again, still refused
    assert Counter(t["properties"].get("crm_handoff_key") for t in store.tasks()) == keys


# --- Salesforce ------------------------------------------------------------------


@pytest.fixture
def salesforce(tmp_path: Path) -> Iterator[tuple[SalesforceSandbox, SalesforceStore, dict[str, str]]]:
    store = SalesforceStore()
    box = SalesforceSandbox(store)
    box.start()
    env = {
        "SALESFORCE_INSTANCE_URL": box.instance_url,
        "SALESFORCE_ACCESS_TOKEN": box.token,
        "SALESFORCE_CA_BUNDLE": box.ca_bundle,
        "SALESFORCE_WINDOW_LAG_SECONDS": "0",
        "HANDOFF_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "HANDOFF_LOOKBACK_SECONDS": "0",
    }  # everything here was created seconds ago
    yield box, store, env
    box.stop()


def sf_user(store: SalesforceStore, email: str) -> str:
    return store.insert(
        "User", {"Username": email, "Email": email, "FirstName": "Dana", "LastName": "Cruz", "IsActive": True}
    )


def test_salesforce_50000_leads_sharing_modstamps_once_idle_and_deletes(salesforce, monkeypatch, tmp_path):
    box, store, env = salesforce
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    sf_user(store, "dana@northwind.example")
    ids = [
        store.insert("Lead", {"LastName": f"L{i}", "Company": "Acme", "Email": f"l{i}@z.example"})
        for i in range(50_000)
    ]
    store.set_bulk_modstamp("Lead", ids[10_000:15_000], datetime.now(UTC) - timedelta(minutes=1))

    code, first = sync(monkeypatch, env, cfg)
    assert code == 0, first["errors"]
    assert first["people_pulled"]["salesforce"] == 50_000
    pulled = mirror_ids(tmp_path / "state.db", "salesforce")
    assert len(pulled) == len(set(pulled)) == 50_000
    assert box.calls["POST /jobs/query"] == 1  # the large first sync went through Bulk API 2.0
    assert first["api_calls_split"]["salesforce"]["pull"] <= 12, dict(box.calls)

    code, idle = sync(monkeypatch, env, cfg)
    assert code == 0 and idle["api_calls"]["salesforce"] <= 5, idle["api_calls"]

    for lid in ids[:10]:
        store.delete("Lead", lid)
    # getDeleted works in whole minutes: a delete is reported once its minute has closed
    time.sleep(61 - datetime.now(UTC).second)
    code, _ = sync(monkeypatch, env, cfg)
    assert code == 0
    assert set(ids[:10]).isdisjoint(mirror_ids(tmp_path / "state.db", "salesforce"))


def ready_lead(store: SalesforceStore, i: int, **extra: Any) -> str:
    return store.insert(
        "Lead",
        {
            "FirstName": f"F{i}",
            "LastName": f"Buyer{i}",
            "Company": "Acme",
            "Email": f"b{i}@acme.example",
            "Title": "VP Operations",
            "Industry": "Technology",
            "NumberOfEmployees": 400,
            "Country": "United States",
            "Status": "Marketing Qualified",
            **extra,
        },
    )


def test_salesforce_1000_tasks_in_five_write_calls_and_rerun_adds_none(salesforce, monkeypatch, tmp_path):
    box, store, env = salesforce
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 5000, 5)])  # capacity 1000
    sf_user(store, "dana@northwind.example")
    webinar = store.insert("Campaign", {"Name": "Webinar", "Type": "Webinar"})
    content = store.insert("Campaign", {"Name": "Whitepaper", "Type": "Content"})
    for i in range(1_000):
        lead = ready_lead(store, i)
        store.insert("CampaignMember", {"CampaignId": webinar, "LeadId": lead, "Status": "Attended"})
        store.insert("CampaignMember", {"CampaignId": content, "LeadId": lead, "Status": "Downloaded"})

    code, summary = sync(monkeypatch, env, cfg)
    assert code == 0, summary["errors"][:3]
    assert summary["tasks_created"]["salesforce"] == 1_000
    upserts = sum(n for name, n in box.calls.items() if "Task/Handoff_Key__c" in name)
    assert upserts <= 5
    tasks = store.all("Task")
    assert len(tasks) == len({t["Handoff_Key__c"] for t in tasks}) == 1_000

    code, again = sync(monkeypatch, env, cfg)
    assert code == 0 and again["tasks_created"]["salesforce"] == 0 and len(store.all("Task")) == 1_000


def test_salesforce_budget_stops_the_run_and_the_next_continues(salesforce, monkeypatch, tmp_path):
    box, store, env = salesforce
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    sf_user(store, "dana@northwind.example")
    for i in range(12_000):
        store.insert("Lead", {"LastName": f"L{i}", "Company": "Acme"})
    box.daily_api_limit = 10_000
    box.api_usage = 7_990  # the org is at 79.9% of its allocation (room for the mapping check); stop at 80%
    env = {**env, "SALESFORCE_BULK_THRESHOLD": "1000000"}  # REST pages, so the stop falls mid-pull

    code, first = sync(monkeypatch, env, cfg)
    assert code == 1 and first["stopped"] and "80%" in first["stopped"]
    assert 0 < first["people_pulled"]["salesforce"] < 12_000
    code, out, _ = cli(monkeypatch, env, "status")
    assert "stopped" in out

    box.api_usage = 0  # a new day
    code, second = sync(monkeypatch, env, cfg)
    assert code == 0, second
    assert second["people_pulled"]["salesforce"] < 12_000  # continued, not restarted
    assert len(set(mirror_ids(tmp_path / "state.db", "salesforce"))) == 12_000


def test_quotes_in_values_flow_through_pull_and_write_unharmed(salesforce, monkeypatch, tmp_path):
    _box, store, env = salesforce
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    sf_user(store, "dana@northwind.example")
    webinar = store.insert("Campaign", {"Name": "Webinar", "Type": "Webinar"})
    nasty = "x' OR Name LIKE '%"
    lead = ready_lead(store, 1, LastName="O'Brien", Company=nasty, Title="VP O'Reilly \\ Ops")
    store.insert("CampaignMember", {"CampaignId": webinar, "LeadId": lead, "Status": "Attended"})
    other = ready_lead(store, 2)
    store.insert("CampaignMember", {"CampaignId": webinar, "LeadId": other, "Status": "Attended"})

    code, summary = sync(monkeypatch, env, cfg)
    assert code == 0, summary["errors"]
    tasks = {t["WhoId"]: t for t in store.all("Task")}
    assert set(tasks) == {lead, other}
    assert "O'Brien" in tasks[lead]["Subject"] and nasty in tasks[lead]["Subject"]
    row = store.get("Lead", lead)
    assert (
        row["LastName"] == "O'Brien" and row["Company"] == nasty and row["Handoff_Status__c"] == "handed off"
    )


def test_hubspot_date_versioned_api_is_one_setting(hubspot, monkeypatch, tmp_path):
    box, store, env = hubspot
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    store.add_owner("sam@northwind.example", "Sam", "Okafor")
    ready_contact(store, 1, datetime.now(UTC))
    seen: list[str] = []

    def record(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ["PATH_INFO"])
        return box(environ, start_response)

    server = serve(record)
    try:
        code, summary = sync(
            monkeypatch, {**env, "HUBSPOT_BASE_URL": server.url, "HUBSPOT_API_VERSION": "2026-03"}, cfg
        )
    finally:
        server.stop()
    assert code == 0 and summary["tasks_created"]["hubspot"] == 1
    crm = [p for p in seen if p.startswith("/crm/")]
    assert crm and all("/2026-03" in p for p in crm), crm  # /crm/owners/2026-03 ends with it
    assert "/crm/objects/2026-03/tasks/batch/create" in crm


def test_hubspot_archived_contacts_leave_the_mirror(hubspot, monkeypatch, tmp_path):
    _, store, env = hubspot
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    store.add_owner("sam@northwind.example", "Sam", "Okafor")
    ids = [
        store.add_contact({"email": f"a{i}@q.example", "lastname": "A", "lifecyclestage": "lead"})
        for i in range(5)
    ]
    assert sync(monkeypatch, env, cfg)[0] == 0
    store.archive_contact(ids[0])
    # the daily scan runs in the pass whose window reaches back into yesterday
    code, _ = sync(monkeypatch, {**env, "HANDOFF_LOOKBACK_SECONDS": "86400"}, cfg)
    assert code == 0
    assert sorted(mirror_ids(tmp_path / "state.db", "hubspot")) == sorted(ids[1:])


def test_hubspot_stage_entry_dates_come_from_the_stage_date_properties(hubspot, monkeypatch, tmp_path):
    _, store, env = hubspot
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    store.add_owner("sam@northwind.example", "Sam", "Okafor")
    became = datetime.now(UTC) - timedelta(days=10)
    cid = store.add_contact(
        {"email": "s@q.example", "lastname": "S", "lifecyclestage": "marketingqualifiedlead"},
        created_at=became,
    )
    assert sync(monkeypatch, env, cfg)[0] == 0
    engine = sa.create_engine(env["HANDOFF_STATE_URL"])
    with engine.connect() as conn:
        entered = conn.execute(
            sa.text("SELECT entered_at FROM stage_history WHERE person_key = :k AND stage = 'mql'"),
            {"k": f"hs-{cid}"},
        ).scalar()
    engine.dispose()
    assert abs(datetime.fromisoformat(str(entered)).replace(tzinfo=UTC) - became) < timedelta(seconds=2)


def test_salesforce_gap_longer_than_the_deletes_window_reconciles_every_id(salesforce, monkeypatch, tmp_path):
    _, store, env = salesforce
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    sf_user(store, "dana@northwind.example")
    ids = [store.insert("Lead", {"LastName": f"R{i}", "Company": "Acme"}) for i in range(30)]
    assert sync(monkeypatch, env, cfg)[0] == 0
    store.purge("Lead", ids[:3])  # gone without a trace: only a full reconcile can tell
    engine = sa.create_engine(env["HANDOFF_STATE_URL"])
    twenty_days_ago = (datetime.now(UTC) - timedelta(days=20)).isoformat()
    with engine.begin() as conn:  # the worker was down for 20 days
        conn.execute(
            sa.text("UPDATE watermarks SET value = :v WHERE crm = 'salesforce' AND stream = 'people'"),
            {"v": json.dumps({"watermark": twenty_days_ago})},
        )
    engine.dispose()
    code, _ = sync(monkeypatch, env, cfg)
    assert code == 0
    assert sorted(mirror_ids(tmp_path / "state.db", "salesforce")) == sorted(ids[3:])
