"""Activity that reaches HubSpot late (after a cycle already read past its occurrence time)
is still counted: HubSpot's events APIs filter by occurrence time only, so the worker
re-reads the last HANDOFF_ACTIVITY_LATE_SECONDS (default a day) once an hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.conftest import FIT, add_rep_users, mapping_dir, rep, sync_json

REP = "sam@northwind.example"


def test_an_event_delivered_20_minutes_late_makes_the_lead_sales_ready(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(REP, "hubspot")])
    add_rep_users(crms, REP)
    cid = crms.hs_store.add_contact({"email": "late@acme.example", "lastname": "Late", **FIT})  # fit: 45
    t0 = datetime.now(UTC)

    code, first = sync_json(crms, monkeypatch, cfg, "--as-of", t0.isoformat())
    assert code == 0 and first["qualified"] == 0, first["errors"]
    code, idle = sync_json(crms, monkeypatch, cfg, "--as-of", (t0 + timedelta(minutes=40)).isoformat())
    assert code == 0 and idle["qualified"] == 0
    assert idle["api_calls"]["hubspot"] <= 5  # the late window is not re-read every cycle

    # the demo request occurred at t0+30 min, before that cycle ran, but reaches HubSpot
    # only now, 20 minutes later (t0+50 min): beyond the 300 s activity lookback
    occurred = t0 + timedelta(minutes=30)
    crms.hs_store.add_event("e_submitted_form", cid, occurred, {"hs_title": "Request a demo"})

    code, late = sync_json(crms, monkeypatch, cfg, "--as-of", (t0 + timedelta(minutes=65)).isoformat())
    assert code == 0, late["errors"]
    assert late["qualified"] == 1
    assert late["handed_off_per_rep"] == {REP: 1}
    (task,) = crms.hs_tasks()
    assert task.properties["crm_handoff_key"].startswith("hs-")


def test_a_late_event_is_read_once_an_hour_and_idle_cycles_stay_cheap(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(REP, "hubspot")])
    add_rep_users(crms, REP)
    cid = crms.hs_store.add_contact({"email": "late@acme.example", "lastname": "Late", **FIT})
    t0 = datetime.now(UTC)
    at = {m: (t0 + timedelta(minutes=m)).isoformat() for m in (0, 10, 20, 30, 61)}
    assert sync_json(crms, monkeypatch, cfg, "--as-of", at[0])[0] == 0
    assert sync_json(crms, monkeypatch, cfg, "--as-of", at[10])[0] == 0
    crms.hs_store.add_event(
        "e_submitted_form", cid, t0 + timedelta(minutes=2), {"hs_title": "Request a demo"}
    )

    for minute in (20, 30):  # narrow cycles: the 18-minute-late event is not in their window
        code, cycle = sync_json(crms, monkeypatch, cfg, "--as-of", at[minute])
        assert code == 0 and cycle["qualified"] == 0
        assert cycle["api_calls"]["hubspot"] <= 5
    code, hourly = sync_json(crms, monkeypatch, cfg, "--as-of", at[61])  # an hour after the last wide read
    assert code == 0 and hourly["qualified"] == 1 and hourly["handed_off_per_rep"] == {REP: 1}
