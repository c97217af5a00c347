"""A rep's recycle decision holds: no new handoff on the old activity, and their status is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.conftest import add_lead, add_rep_users, mapping_dir, rep, sync_json


def _meeting(crms, lead_id: str, at: datetime) -> None:
    """A meeting logged at ``at`` (the sandbox stamps it then, as the org would)."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    crms.sf_store.insert("Event", {"WhoId": lead_id, "Subject": "Discovery", "StartDateTime": stamp}, at=at)


def _lead(crms, lead_id: str) -> dict:
    soql = f"SELECT Status, Handoff_Status__c FROM Lead WHERE Id = '{lead_id}'"
    return crms.salesforce().query(soql)["records"][0]


def test_a_recycled_lead_comes_back_only_on_new_behaviour(crms, monkeypatch, tmp_path):
    now = datetime.now(UTC)
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    add_rep_users(crms, "dana@northwind.example")
    lead = add_lead(crms, 1)
    _meeting(crms, lead, now - timedelta(days=2))  # fit 45 + a meeting 30: sales-ready

    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and first["handed_off"] == 1
    assert _lead(crms, lead)["Status"] == "Working - Contacted"

    crms.sf_store.update("Lead", lead, {"Status": "Nurture"})  # the rep: bad timing, recycle
    for days in (7, 14):  # new weeks, capacity back: the old meeting still counts, but must not
        code, later = sync_json(crms, monkeypatch, cfg, "--as-of", (now + timedelta(days=days)).isoformat())
        assert code == 0, later["errors"]
        assert later["handed_off"] == 0
        assert _lead(crms, lead)["Status"] == "Nurture"  # the rep's status is never overwritten
    assert len(crms.sf_tasks()) == 1

    _meeting(crms, lead, now + timedelta(days=15))  # new behaviour after the rep's decision
    code, back = sync_json(crms, monkeypatch, cfg, "--as-of", (now + timedelta(days=16)).isoformat())
    assert code == 0, back["errors"]
    assert back["handed_off"] == 1 and len(crms.sf_tasks()) == 2
