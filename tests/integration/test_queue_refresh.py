"""Waiting people are evaluated again as their behaviour leaves its window (no CRM change needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep, run_cli, sync_json


def test_after_35_days_lapsed_leads_leave_the_queue_and_the_rest_keep_their_place(
    crms, monkeypatch, tmp_path
):
    crms.env["HANDOFF_ACTIVITY_LATE_SECONDS"] = "0"  # no hourly re-read of old events: time alone
    add_rep_users(crms, "dana@northwind.example")
    cfg = mapping_dir(tmp_path / "week1", reps=[rep("dana@northwind.example", "hubspot", 40, 20)])
    full = mapping_dir(tmp_path / "later", reps=[rep("dana@northwind.example", "hubspot", 0, 20)])
    webinar = [add_ready_contact(crms, i, extra_events=1) for i in range(3)]  # 85: form + webinar
    form_only = [add_ready_contact(crms, 10 + i) for i in range(3)]  # 65: form within 30 days

    code, week1 = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and week1["handed_off"] == 2 and week1["kept_in_nurture"] == 4

    code, settle = sync_json(crms, monkeypatch, cfg)  # our own writes read back: nothing changes after
    assert code == 0 and settle["handed_off"] == 0

    later = (datetime.now(UTC) + timedelta(days=35)).isoformat()
    code, after = sync_json(crms, monkeypatch, full, "--as-of", later)

    assert code == 0, after["errors"]
    # no CRM change: whatever a pass reads again is our own writes, skipped; time alone did this
    assert after["people_unchanged"] == after["people_pulled"]

    code, out, _ = run_cli(crms, monkeypatch, "status", "--json")
    queue = json.loads(out)["queue"]
    assert queue["size"] == 1
    (kept,) = queue["top"]
    assert kept["score"] == 65  # fit 45 + the webinar (60-day window); the form (30 days) has lapsed
    statuses = {
        c.id: (c.properties.get("crm_handoff_status"), c.properties.get("crm_handoff_reason"))
        for c in crms.hubspot().crm.contacts.get_all(properties=["crm_handoff_status", "crm_handoff_reason"])
    }
    for cid in form_only:
        status, reason = statuses[cid]
        assert status == "no longer sales-ready"
        assert reason.startswith("score 45 of 60: qualifying activity left its window")
    handed = {h["person_key"] for h in week1["plan"]}
    assert sum(1 for cid in webinar if (statuses[cid][0] or "").startswith("waiting:")) == 1
    assert len(handed) == 2
