"""The closed loop through the real CLI and both sandboxes (issue: outcomes come back).

Six handoffs to rep A, three people from each CRM, tasks in both. A completes two (one in
each CRM), logs a call on one, rejects one as not a fit and ignores two. After the SLA the
two go to rep B, who has capacity; the rejected lead waits in nurture with its reason in
HubSpot; the report counts what happened.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import (
    Crms,
    add_lead,
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)

A = "ana@northwind.example"
B = "ben@northwind.example"
SLA = {"first_touch_within_hours": 16, "on_breach": "reassign", "max_reassignments": 1}
OUTCOME_PROPS = [
    "email",
    "crm_handoff_status",
    "crm_handoff_reason",
    "crm_handoff_outcome",
    "crm_handoff_outcome_reason",
    "crm_handoff_sla",
    "crm_handoff_reassigned",
    "crm_handoff_first_touch_date",
]


def ready_lead(crms: Crms, i: int) -> str:
    """A sales-ready Salesforce lead (fit, a webinar attended and a download)."""
    lead = add_lead(crms, i)
    store = crms.sf_store
    webinar = store.insert("Campaign", {"Name": f"Webinar {i}", "Type": "Webinar"})
    content = store.insert("Campaign", {"Name": f"Pricing guide {i}", "Type": "Content"})
    store.insert("CampaignMember", {"CampaignId": webinar, "LeadId": lead, "Status": "Attended"})
    store.insert("CampaignMember", {"CampaignId": content, "LeadId": lead, "Status": "Downloaded"})
    return lead


def setup(crms: Crms, tmp_path, sla=SLA, **handoff):
    today = datetime.now(UTC).date()
    away_today = {"out_of_office": [str(today)]}
    reps = [
        rep(A, "hubspot", 120, 20, timezone="UTC"),  # capacity 6
        rep(B, "salesforce", 40, 20, timezone="UTC", availability=away_today),  # 2, back tomorrow
    ]
    ids = {r["email"]: add_rep_users(crms, r["email"]) for r in reps}
    cfg = mapping_dir(tmp_path, reps=reps, handoff={"task_in": "both", "sla": sla, **handoff})
    return cfg, ids


def tasks_by_email(crms: Crms) -> tuple[dict[str, list], dict[str, list]]:
    """Handoff tasks per person email: HubSpot's (SDK objects) and Salesforce's (records)."""
    hs = crms.hubspot()
    emails = {c.id: c.properties["email"] for c in hs.crm.contacts.get_all(properties=["email"])}
    contact_of = {t["id"]: t["associations"]["contacts"][0] for t in crms.hs_store.tasks()}
    hs_tasks: dict[str, list] = {}
    for t in crms.hs_tasks():
        hs_tasks.setdefault(emails[contact_of[t.id]], []).append(t)
    sf = crms.salesforce()
    who = {r["Id"]: r["Email"] for r in sf.query_all("SELECT Id, Email FROM Lead")["records"]}
    sf_tasks: dict[str, list] = {}
    for t in sf.query_all(
        "SELECT Id, OwnerId, WhoId, Status, Description, Handoff_Key__c FROM Task WHERE Handoff_Key__c != null"
    )["records"]:
        sf_tasks.setdefault(who[t["WhoId"]], []).append(t)
    return hs_tasks, sf_tasks


def email(i: int) -> str:
    return f"lead{i}@acme{i}.example"


@pytest.fixture
def first_cycle(crms, monkeypatch, tmp_path):
    cfg, ids = setup(crms, tmp_path)
    code, _, err = run_cli(crms, monkeypatch, "install", "--config", str(cfg))
    assert code == 0, err
    contacts = [add_ready_contact(crms, i) for i in range(3)]
    leads = [ready_lead(crms, i) for i in range(3, 6)]
    t0 = datetime.now(UTC)
    code, week = sync_json(crms, monkeypatch, cfg)
    assert code == 0, week["errors"]
    assert week["handed_off_per_rep"] == {A: 6} and B in week["unavailable_reps"]
    return cfg, ids, contacts, leads, t0


def test_six_handoffs_worked_called_rejected_and_two_reassigned(crms, monkeypatch, first_cycle):
    cfg, ids, contacts, _, t0 = first_cycle
    hs_tasks, sf_tasks = tasks_by_email(crms)
    assert sorted(hs_tasks) == sorted(sf_tasks) == sorted(email(i) for i in range(6))
    acted = t0 + timedelta(hours=1)
    crms.hs_store.complete_task(hs_tasks[email(0)][0].id, at=acted)  # completed in HubSpot
    crms.sf_store.update("Task", sf_tasks[email(3)][0]["Id"], {"Status": "Completed"}, at=acted)
    crms.hs_store.log_call(contacts[1], ids[A][0], at=acted)  # a call logged by A
    crms.hs_store.complete_task(hs_tasks[email(2)][0].id, at=acted, outcome="not_a_fit")  # rejected
    # 4 and 5: ignored

    later = (t0 + timedelta(days=3)).isoformat()
    code, week = sync_json(crms, monkeypatch, cfg, "--as-of", later)
    assert code == 0, week["errors"]
    follow = week["follow_up"]
    assert follow["reassigned"] == 2 and follow["rejected"] == 1 and follow["worked"] == 2

    hs_tasks, sf_tasks = tasks_by_email(crms)
    ben_user, ana_user = ids[B][1], ids[A][1]
    for i in (4, 5):  # B has the missed ones, in B's CRM (and HubSpot: task_in both)...
        mine = [t for t in sf_tasks[email(i)] if t["OwnerId"] == ben_user]
        assert len(mine) == 1 and "Reassigned to you from Ana" in mine[0]["Description"]
        old = [t for t in sf_tasks[email(i)] if t["OwnerId"] == ana_user]
        assert len(old) == 1 and old[0]["Status"] == "Completed"  # ...and A's are closed with a note
        assert "Reassigned to Ben" in old[0]["Description"]
        assert len(hs_tasks[email(i)]) == 2
    for i in (0, 1, 2, 3):
        assert len(sf_tasks[email(i)]) == 1 and len(hs_tasks[email(i)]) == 1  # nobody else got them

    hs = crms.hubspot()
    people = {c.properties["email"]: c.properties for c in hs.crm.contacts.get_all(properties=OUTCOME_PROPS)}
    rejected = people[email(2)]
    assert rejected["crm_handoff_status"] == "back in nurture"
    assert "Not a fit" in rejected["crm_handoff_reason"]
    assert (
        rejected["crm_handoff_outcome"] == "rejected"
        and rejected["crm_handoff_outcome_reason"] == "Not a fit"
    )
    assert (
        people[email(0)]["crm_handoff_outcome"] == "worked" and people[email(0)]["crm_handoff_sla"] == "met"
    )
    assert people[email(1)]["crm_handoff_outcome"] == "acted"
    assert people[email(1)]["crm_handoff_first_touch_date"]
    assert people[email(4)]["crm_handoff_outcome"] == "reassigned"
    assert (
        people[email(4)]["crm_handoff_reassigned"] == "1" and people[email(4)]["crm_handoff_sla"] == "missed"
    )

    code, out, err = run_cli(crms, monkeypatch, "report", "--json", "--config", str(cfg), "--as-of", later)
    assert code == 0, err
    o = json.loads(out)["outcomes"]
    assert o["leads_handed_off"] == 6
    assert o["acted_on_within_sla"] == 3 and o["acted_on"] == 3
    assert o["rejected"] == 1 and o["rejection_reasons"] == {"Not a fit": 1}
    assert o["reassigned"] == 2
    ana = o["per_rep"][A]
    assert ana["handoffs"] == 6 and ana["acted_on_within_sla"] == 3 and ana["reassigned"] == 2
    assert ana["time_to_first_touch_hours"] == {"median": 1.0, "p90": 1.0, "count": 3}
    assert o["per_rep"][B]["handoffs"] == 2 and o["per_rep"][B]["open"] == 2

    code, again = sync_json(crms, monkeypatch, cfg, "--as-of", later)  # nothing happens twice
    assert code == 0, again["errors"]
    assert again["follow_up"]["reassigned"] == 0 and again["handed_off"] == 0
    hs_after, sf_after = tasks_by_email(crms)
    assert sum(map(len, sf_after.values())) == 8 and sum(map(len, hs_after.values())) == 8


@pytest.mark.parametrize(("minutes", "gives_back"), [(30, True), (120, False)])
def test_a_quick_rejection_gives_the_weekly_slot_back(crms, monkeypatch, tmp_path, minutes, gives_back):
    """handoff.yaml give_back_if_rejected_within_hours (1 in the shipped file): a lead
    rejected this soon after assignment does not count against the rep's week."""
    reps = [rep(A, "hubspot", 40, 20, timezone="UTC")]  # capacity 2
    add_rep_users(crms, A)
    cfg = mapping_dir(tmp_path, reps=reps)
    run_cli(crms, monkeypatch, "install", "--config", str(cfg))
    for i in range(3):
        add_ready_contact(crms, i)
    t0 = datetime.now(UTC)
    code, week = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and week["handed_off"] == 2 and week["kept_in_nurture"] == 1
    first = crms.hs_tasks()[0]
    crms.hs_store.complete_task(first.id, at=t0 + timedelta(minutes=minutes), outcome="not_a_fit")
    soon = (t0 + timedelta(minutes=minutes + 5)).isoformat()
    if datetime.fromisoformat(soon).isocalendar()[:2] != t0.isocalendar()[:2]:
        pytest.skip("the test would cross into next week, where capacity comes back anyway")
    code, later = sync_json(crms, monkeypatch, cfg, "--as-of", soon)
    assert code == 0, later["errors"]
    assert later["follow_up"]["rejected"] == 1
    assert later["handed_off"] == (1 if gives_back else 0)
    assert len(crms.hs_tasks()) == (3 if gives_back else 2)


def test_a_rep_moving_the_lead_status_on_is_a_first_touch(crms, monkeypatch, tmp_path):
    """The rep sets the HubSpot lead status to Connected (a status the funnel maps to SQL,
    other than the one crm-handoff writes itself): acted on, no call logged needed."""
    reps = [rep(A, "hubspot", 120, 20, timezone="UTC")]
    add_rep_users(crms, A)
    cfg = mapping_dir(tmp_path, reps=reps, handoff={"sla": SLA | {"on_breach": "notify"}})
    contact = add_ready_contact(crms, 0)
    code, week = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and week["handed_off"] == 1
    assert crms.hs_store.contacts()[0]["hs_lead_status"] == "IN_PROGRESS"  # crm-handoff's own write
    crms.hs_store.update_contact(contact, {"hs_lead_status": "CONNECTED"})
    code, later = sync_json(crms, monkeypatch, cfg)
    assert code == 0, later["errors"]
    assert later["follow_up"]["acted"] == 1
    code, out, _ = run_cli(crms, monkeypatch, "report", "--json", "--config", str(cfg))
    o = json.loads(out)["outcomes"]
    assert o["acted_on_within_sla"] == 1 and o["states"]["acted"] == 1
