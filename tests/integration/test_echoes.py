"""The cycle after a writing cycle: our own writes come back from the pulls and change nothing."""

from __future__ import annotations

import json
import time

from sync.state import StateStore
from tests.integration.conftest import (
    add_lead,
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)


def _back_to_back(monkeypatch) -> None:
    """Cycles a second apart: Salesforce windows that end now (rounded up to the second),
    and a one-second lookback, so each cycle reads what changed after the previous one
    started, and nothing older."""
    monkeypatch.setenv("HANDOFF_LOOKBACK_SECONDS", "1")
    monkeypatch.setenv("SALESFORCE_WINDOW_LAG_SECONDS", "0")


def _next_second() -> None:
    """The lookback is a second: the previous cycle's writes fall before the next window."""
    time.sleep(1.05)


def _lead_stamps(crms) -> dict[str, str]:
    rows = crms.salesforce().query("SELECT Id, SystemModstamp FROM Lead")["records"]
    return {r["Id"]: r["SystemModstamp"] for r in rows}


def test_echoes_of_our_writes_are_skipped_and_the_next_cycle_is_idle(crms, monkeypatch, tmp_path):
    _back_to_back(monkeypatch)
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    add_rep_users(crms, "dana@northwind.example")
    for i in range(4):  # sales-ready in HubSpot, a lead in Salesforce; the first cycle links and hands off
        add_ready_contact(crms, i)
        add_lead(crms, i, Status="Open - Not Contacted")

    _next_second()
    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0, first["errors"]
    assert first["handed_off"] == 4 and first["people_updated"]["salesforce"] >= 4
    written = _lead_stamps(crms)

    _next_second()
    code, settle = sync_json(crms, monkeypatch, cfg)
    assert code == 0, settle["errors"]
    assert settle["people_pulled"] == {"hubspot": 4, "salesforce": 4}  # our writes, read back
    assert settle["people_unchanged"] == {"hubspot": 4, "salesforce": 4}
    assert settle["people_updated"] == {"hubspot": 0, "salesforce": 0}
    assert settle["tasks_created"] == {"hubspot": 0, "salesforce": 0}
    assert _lead_stamps(crms) == written  # nothing was written back

    _next_second()
    code, idle = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and idle["people_pulled"] == {"hubspot": 0, "salesforce": 0}
    # the idle pass (HubSpot 6, Salesforce 3) plus one outcome check per CRM (sync.followup)
    assert idle["api_calls"]["hubspot"] <= 7 and idle["api_calls"]["salesforce"] <= 4


def test_a_change_made_after_our_write_is_not_taken_for_an_echo(crms, monkeypatch, tmp_path):
    _back_to_back(monkeypatch)
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    add_rep_users(crms, "dana@northwind.example")
    cids = [add_ready_contact(crms, i) for i in range(3)]
    leads = [add_lead(crms, i, Status="Open - Not Contacted") for i in range(3)]
    _next_second()
    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and first["handed_off"] == 3

    crms.salesforce().Lead.update(leads[1], {"Title": "Chief Data Officer"})  # a rep edits a lead we wrote
    _next_second()
    code, after = sync_json(crms, monkeypatch, cfg)
    assert code == 0, after["errors"]
    assert after["people_pulled"] == {"hubspot": 3, "salesforce": 3}, after
    assert after["people_unchanged"]["salesforce"] == 2  # the edited lead is processed
    assert after["people_updated"]["hubspot"] >= 1
    title = crms.hubspot().crm.contacts.basic_api.get_by_id(cids[1], properties=["jobtitle"])
    assert title.properties["jobtitle"] == "Chief Data Officer"


def test_as_of_runs_the_whole_cycle_on_a_shifted_clock(crms, monkeypatch, tmp_path, state_url):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    add_rep_users(crms, "dana@northwind.example")
    add_ready_contact(crms, 1)
    code, _, err = run_cli(
        crms, monkeypatch, "sync", "--once", "--json", "--config", str(cfg), "--as-of", "2031-03-02T09:00:00Z"
    )
    assert code == 0
    assert "warning: --as-of 2031-03-02T09:00:00+00:00 is ahead of the clock" in err
    store = StateStore(state_url)
    try:
        people_mark = json.loads(store.watermark("hubspot", "people") or "{}")["watermark"]
        activity_mark = store.watermark("hubspot", "activities") or ""
        sf_mark = json.loads(store.watermark("salesforce", "people") or "{}")["watermark"]
    finally:
        store.close()
    assert people_mark.startswith("2031-03-02T09:0")
    assert activity_mark.startswith("2031-03-02T09:0")
    assert sf_mark.startswith("2031-03-02T09:0")  # the Salesforce window's end, on the same clock


def test_hubspot_activity_arriving_after_salesforce_was_scored_is_counted(crms, monkeypatch, tmp_path):
    """Salesforce is processed while HubSpot's activity is still being pulled (on a thread);
    a lead that HubSpot's email clicks make sales-ready is scored again once they are in."""
    import time as _time
    from datetime import UTC, datetime, timedelta

    from connectors.hubspot.connector import HubSpotConnector

    slow = HubSpotConnector.pull_activities

    def slow_pull(self, since):  # a slow activity pull: Salesforce's chunk is scored first
        _time.sleep(0.5)
        yield from slow(self, since)

    monkeypatch.setattr(HubSpotConnector, "pull_activities", slow_pull)
    cfg = mapping_dir(
        tmp_path, reps=[rep("dana@northwind.example", "salesforce")], sales_ready={"threshold": 55}
    )
    add_rep_users(crms, "dana@northwind.example")
    lead = add_lead(crms, 7, Status="Open - Not Contacted")  # fit 45: not sales-ready on its own
    lonely = add_lead(crms, 8, Status="Open - Not Contacted")
    for day in (1, 2, 3):  # three marketing email clicks (+10), known to HubSpot only by email
        crms.hs_store.add_email_event("lead7@acme7.example", "CLICK", datetime.now(UTC) - timedelta(days=day))

    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0, summary["errors"]
    assert [h["person_key"] for h in summary["plan"]] == [f"sf-{lead}"]
    assert "Clicks marketing emails" in json.dumps(summary["plan"][0]["reasons"])
    assert {t["WhoId"] for t in crms.sf_tasks()} == {lead} and lonely != lead
