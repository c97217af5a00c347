"""Identity through the real CLI: one email is one person, a shared address is nobody to hand off,
and a person nobody can be handed off is set aside with the reason, in the state and the CRMs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.integration.conftest import (
    add_lead,
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)

SHARED = "orders@reseller.example"


def _meeting(crms, lead_id: str) -> None:
    """A discovery meeting logged on the lead: with the lead's fit, sales-ready (45 + 30)."""
    at = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    crms.sf_store.insert("Event", {"WhoId": lead_id, "Subject": "Discovery", "StartDateTime": at})


def _hs_status(crms) -> dict[str, str | None]:
    """Contact id -> 'status: reason' as HubSpot shows them (the status is a dropdown value)."""
    props = ["crm_handoff_status", "crm_handoff_reason"]
    return {
        c.id: f"{c.properties.get('crm_handoff_status')}: {c.properties.get('crm_handoff_reason')}"
        for c in crms.hubspot().crm.contacts.get_all(properties=props)
    }


def _status(crms, monkeypatch) -> dict:
    code, out, err = run_cli(crms, monkeypatch, "status", "--json")
    assert code == 0, err
    return json.loads(out)


def test_shared_address_is_set_aside_and_everyone_else_handed_off(crms, monkeypatch, tmp_path):
    reps = [rep("dana@northwind.example", "salesforce", 6000), rep("hank@northwind.example", "hubspot", 6000)]
    cfg = mapping_dir(tmp_path, reps=reps)
    for r in reps:
        add_rep_users(crms, r["email"])
    for i in range(200):
        add_ready_contact(crms, i)
    shared_contact = add_ready_contact(crms, 999, email=SHARED)
    shared = []
    for i in range(50):
        shared.append(add_lead(crms, 1000 + i, Email=SHARED if i % 2 else SHARED.upper()))
        _meeting(crms, shared[-1])

    code, summary = sync_json(crms, monkeypatch, cfg)

    assert code == 1  # records set aside are records that failed: see handoff status
    assert summary["handed_off"] == 200
    tasks = crms.sf_tasks() + crms.hs_tasks()
    assert len(tasks) == 200
    shared_ids = {shared_contact, *shared}
    assert not {t["WhoId"] for t in crms.sf_tasks()} & shared_ids
    failed = {e["record"] for e in summary["errors"]}
    assert {f"salesforce:lead/{i}" for i in shared} <= failed
    assert all("shared by 50 salesforce records" in e["reason"] for e in summary["errors"])
    assert _hs_status(crms)[shared_contact].startswith(
        "set aside: set aside: orders@reseller.example is shared by 50"
    )
    sf = crms.salesforce()
    soql = "SELECT Id, Handoff_Status__c, Handoff_Reason__c FROM Lead WHERE Email = 'orders@reseller.example'"
    rows = sf.query_all(soql)
    assert len(rows["records"]) == 50
    assert all(r["Handoff_Status__c"] == "set aside" for r in rows["records"])
    assert all("is shared by 50" in r["Handoff_Reason__c"] for r in rows["records"])
    status = _status(crms, monkeypatch)
    assert status["set_aside"]["size"] == summary["set_aside"] == 50
    assert {p["reason"] for p in status["set_aside"]["people"]} == {summary["errors"][0]["reason"]}

    code, again = sync_json(crms, monkeypatch, cfg)  # said once; nothing else to do
    assert code == 0 and again["handed_off"] == 0 and len(crms.sf_tasks() + crms.hs_tasks()) == 200


def test_duplicate_records_of_one_email_get_one_task(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 600)])
    add_rep_users(crms, "dana@northwind.example")
    leads = [add_lead(crms, 7, Email=e) for e in ("pat@dup.example", "Pat@Dup.example", "PAT@dup.example")]
    for lead in leads:
        _meeting(crms, lead)

    code, summary = sync_json(crms, monkeypatch, cfg)

    assert code == 0, summary["errors"]
    assert summary["handed_off"] == 1 and summary["set_aside"] == 2
    (task,) = crms.sf_tasks()
    assert task["WhoId"] in leads
    dupes = [n for n in summary["nurture"] if n["reason"].startswith("set aside: duplicate of")]
    assert len(dupes) == 2

    code, later = sync_json(crms, monkeypatch, cfg)  # the duplicates never get a task of their own
    assert code == 0 and later["handed_off"] == 0 and len(crms.sf_tasks()) == 1


def test_two_spellings_of_one_email_are_one_person(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 600)])
    add_rep_users(crms, "dana@northwind.example")
    add_ready_contact(crms, 1, email="  Case.Variant@Example.COM ")
    lead = add_lead(crms, 1, Email="case.variant@example.com")
    add_ready_contact(crms, 2, email=" Only.In.HubSpot@Example.COM")

    code, summary = sync_json(crms, monkeypatch, cfg)

    assert code == 0, summary["errors"]
    assert summary["handed_off"] == 2
    tasks = crms.sf_tasks()
    assert len(tasks) == 2 and lead in {t["WhoId"] for t in tasks}
    created = crms.salesforce().query(f"SELECT Email FROM Lead WHERE Id != '{lead}'")["records"]
    assert [r["Email"] for r in created] == ["only.in.hubspot@example.com"]


def test_people_without_email_are_set_aside_with_the_reason(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 600)])
    add_rep_users(crms, "dana@northwind.example")
    contact = add_ready_contact(crms, 1, email="")
    lead = add_lead(crms, 2, Email=None)
    _meeting(crms, lead)
    add_ready_contact(crms, 3)

    code, summary = sync_json(crms, monkeypatch, cfg)

    assert code == 0, summary["errors"]
    assert summary["handed_off"] == 1 and summary["set_aside"] == 2
    assert _hs_status(crms)[contact].startswith("set aside: set aside: no email address")
    soql = f"SELECT Handoff_Status__c, Handoff_Reason__c FROM Lead WHERE Id = '{lead}'"
    row = crms.salesforce().query(soql)["records"][0]
    assert row["Handoff_Status__c"] == "set aside"
    assert row["Handoff_Reason__c"].startswith("set aside: no email address")
    status = _status(crms, monkeypatch)
    assert {p["reason"] for p in status["set_aside"]["people"]} == {"set aside: no email address"}
    code, out, _ = run_cli(crms, monkeypatch, "status")
    assert "set aside (not handed off until their records are fixed): 2" in out
