"""The end-to-end cycle through the real CLI; assertions read the sandboxes back through the SDKs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.conftest import state_tables
from tests.integration.conftest import (
    add_lead,
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)


def test_capacity_six_handed_off_twenty_four_nurtured_then_next_six(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 120, 20)])
    _, user = add_rep_users(crms, "dana@northwind.example")
    for i in range(30):  # 30 sales-ready people in both CRMs, scores 65..100
        add_ready_contact(crms, i, extra_events=i % 4)
        add_lead(crms, i)

    code, week1 = sync_json(crms, monkeypatch, cfg)
    assert code == 0, week1["errors"]
    assert week1["qualified"] == 30
    assert week1["handed_off_per_rep"] == {"dana@northwind.example": 6}
    assert week1["kept_in_nurture"] == 24
    assert week1["handed_off_from_nurture"] == 0  # nobody had waited before this first cycle
    tasks = crms.sf_tasks()
    assert len(tasks) == 6 and {t["OwnerId"] for t in tasks} == {user}
    assert all(t["WhoId"].startswith("00Q") for t in tasks)
    assert "Why this lead qualified" in tasks[0]["Description"]
    handed_scores = sorted((h["score"] for h in week1["plan"]), reverse=True)
    waiting = sorted(week1["nurture"], key=lambda n: (-n["score"], n["person_key"]))
    assert min(handed_scores) >= max(n["score"] for n in waiting)

    hs = crms.hubspot()
    statuses = [
        c.properties.get("crm_handoff_status")
        for c in hs.crm.contacts.get_all(properties=["crm_handoff_status"])
    ]
    assert statuses.count("waiting: rep capacity") == 24
    assert statuses.count("handed off") == 6

    code, again = sync_json(crms, monkeypatch, cfg)  # same week: capacity is used up
    assert code == 0 and again["handed_off"] == 0 and len(crms.sf_tasks()) == 6

    next_week = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    code, week2 = sync_json(crms, monkeypatch, cfg, "--as-of", next_week)
    assert code == 0, week2["errors"]
    assert week2["handed_off_per_rep"] == {"dana@northwind.example": 6}
    assert week2["handed_off_from_nurture"] == 6  # the overflow of week 1, offered again
    assert sorted(h["person_key"] for h in week2["plan"]) == sorted(n["person_key"] for n in waiting[:6])
    assert len(crms.sf_tasks()) == 12
    assert week2["kept_in_nurture"] == 18


def test_hubspot_only_contact_routed_to_salesforce_rep_becomes_linked_lead(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("lee@northwind.example", "salesforce")])
    _, user = add_rep_users(crms, "lee@northwind.example")
    cid = add_ready_contact(crms, 1)

    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0, summary["errors"]
    assert summary["people_created"]["salesforce"] == 1
    sf = crms.salesforce()
    leads = sf.query("SELECT Id, OwnerId, Email, Title, Company, HubSpot_Contact_Id__c, Status FROM Lead")[
        "records"
    ]
    assert len(leads) == 1
    lead = leads[0]
    assert lead["OwnerId"] == user and lead["HubSpot_Contact_Id__c"] == cid
    assert lead["Title"] == "VP Marketing" and lead["Status"] == "Working - Contacted"
    (task,) = crms.sf_tasks()
    assert task["WhoId"] == lead["Id"] and task["OwnerId"] == user
    contact = crms.hubspot().crm.contacts.basic_api.get_by_id(
        cid, properties=["crm_handoff_salesforce_id", "lifecyclestage"]
    )
    assert contact.properties["crm_handoff_salesforce_id"] == lead["Id"]
    assert contact.properties["lifecyclestage"] == "salesqualifiedlead"

    code, again = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and again["tasks_created"] == {"hubspot": 0, "salesforce": 0}
    assert len(sf.query("SELECT Id FROM Lead")["records"]) == 1


def _title_scenario(crms, monkeypatch, tmp_path, rule):
    fields = json.loads(
        json.dumps(
            __import__("yaml").safe_load((mapping_dir(tmp_path) / "fields.yaml").read_text())["fields"]
        )
    )
    for f in fields:
        if f["name"] == "title":
            f["rule"] = rule
    cfg = mapping_dir(tmp_path, reps=[rep("lee@northwind.example", "salesforce")], fields={"fields": fields})
    add_rep_users(crms, "lee@northwind.example")
    cid = crms.hs_store.add_contact(
        {
            "email": "kim@globex.example",
            "firstname": "Kim",
            "lastname": "Ro",
            "jobtitle": "Engineer",
            "company": "Globex",
            "lifecyclestage": "lead",
        }
    )
    lead = add_lead(
        crms,
        99,
        Email="kim@globex.example",
        Title="Engineer",
        FirstName="Kim",
        LastName="Ro",
        Company="Globex",
        Status="Open - Not Contacted",
    )
    code, _ = sync_json(crms, monkeypatch, cfg)
    assert code == 0
    crms.salesforce().Lead.update(lead, {"Title": "Chief Data Officer"})
    code, _ = sync_json(crms, monkeypatch, cfg)
    assert code == 0
    return (
        crms.hubspot().crm.contacts.basic_api.get_by_id(cid, properties=["jobtitle"]).properties["jobtitle"]
    )


def test_title_changed_in_salesforce_reaches_hubspot_when_two_way(crms, monkeypatch, tmp_path):
    assert _title_scenario(crms, monkeypatch, tmp_path, "two_way") == "Chief Data Officer"


def test_title_changed_in_salesforce_stays_out_of_hubspot_when_always_hubspot(crms, monkeypatch, tmp_path):
    assert _title_scenario(crms, monkeypatch, tmp_path, "always_hubspot") == "Engineer"


def test_dry_run_prints_plan_and_writes_nothing(crms, monkeypatch, tmp_path, state_url):
    cfg = mapping_dir(tmp_path, reps=[rep("lee@northwind.example", "hubspot")])
    add_rep_users(crms, "lee@northwind.example")
    for i in range(3):
        add_ready_contact(crms, i)
    before_hs = json.dumps(crms.hs_store.contacts(), sort_keys=True, default=str)
    code, out, err = run_cli(crms, monkeypatch, "sync", "--once", "--dry-run", "--config", str(cfg))
    assert code == 0, err
    assert "DRY RUN - nothing written" in out and "would hand off" in out
    assert out.count("-> lee@northwind.example") == 3
    assert crms.hs_tasks() == [] and crms.sf_tasks() == []
    assert json.dumps(crms.hs_store.contacts(), sort_keys=True, default=str) == before_hs
    assert state_tables(state_url) == []  # no SQLite file, no PostgreSQL table


def test_hubspot_rep_gets_hubspot_task_associated_with_contact(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    owner, _ = add_rep_users(crms, "sam@northwind.example")
    cid = add_ready_contact(crms, 5)
    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and summary["tasks_created"]["hubspot"] == 1
    (task,) = crms.hs_tasks()
    assert task.properties["hubspot_owner_id"] == owner
    linked = crms.hubspot().crm.associations.v4.basic_api.get_page("tasks", task.id, "contacts")
    assert [str(a.to_object_id) for a in linked.results] == [cid]
    assert {t.type_id for a in linked.results for t in a.association_types} == {204}
    assert "Request a demo" in task.properties["hs_task_body"]
    code, out, _ = run_cli(crms, monkeypatch, "status")
    assert code == 0 and "ok" in out


def test_merged_hubspot_contact_keeps_its_handoff_history(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    add_rep_users(crms, "sam@northwind.example")
    first = add_ready_contact(crms, 1)
    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and summary["handed_off"] == 1
    duplicate = add_ready_contact(crms, 2, email="other@acme1.example")
    crms.hs_store.merge_contacts(duplicate, first)  # the handed-off contact merged into a newer one
    code, again = sync_json(crms, monkeypatch, cfg)
    assert code == 0, again["errors"]
    assert again["handed_off"] == 0  # the same person: already handed off
    assert len(crms.hs_tasks()) == 1


def test_a_stop_request_ends_the_cycle_at_a_checkpoint_and_the_next_continues(crms, monkeypatch, tmp_path):
    from mappings.loader import load_mappings
    from sync.cycle import run_cycle
    from sync.settings import load_settings
    from sync.wiring import build_engine, open_state

    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    add_rep_users(crms, "sam@northwind.example")
    for i in range(2_500):
        crms.hs_store.add_contact({"email": f"p{i}@s.example", "lastname": "P", "lifecyclestage": "lead"})
    for key, value in crms.env.items():
        monkeypatch.setenv(key, value)
    settings, mapping = load_settings(), load_mappings(cfg)
    asked = []

    state = open_state(settings)

    def stop_after_first_chunk() -> str | None:  # the first HubSpot chunk (Salesforce comes first)
        if "resume" not in (state.watermark("hubspot", "people") or ""):
            return None
        asked.append(1)
        return "stopped: the worker is shutting down (SIGTERM/SIGINT)"

    try:
        first = run_cycle(
            build_engine(settings, mapping, state), datetime.now(UTC), should_stop=stop_after_first_chunk
        )
        assert first.summary.stopped.startswith("stopped: the worker is shutting down")
        assert first.exit_code == 1 and len(asked) == 1
        hs_first = first.summary.people_pulled["hubspot"]
        assert 0 < hs_first < 2_500
        second = run_cycle(build_engine(settings, mapping, state), datetime.now(UTC))
    finally:
        state.close()
    assert second.summary.stopped is None
    assert hs_first + second.summary.people_pulled["hubspot"] == 2_500  # continued, nothing re-read
