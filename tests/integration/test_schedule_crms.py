"""A schedule job that pulls one CRM (``crms: [salesforce]``): a short Salesforce interval
beside a longer full cycle. It reads nothing of HubSpot and leaves HubSpot's watermarks
alone, so the next full cycle still finds every HubSpot change."""

from __future__ import annotations

from datetime import UTC, datetime

from mappings.loader import load_mappings
from sync.cycle import run_cycle
from sync.settings import load_settings
from sync.wiring import build_engine, open_state
from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep
from tests.integration.test_closed_loop import ready_lead


def _cycle(crms, monkeypatch, cfg, pulls):
    for key, value in crms.env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    state = open_state(settings)
    try:
        engine = build_engine(settings, load_mappings(cfg), state)
        engine.pulls = pulls
        result = run_cycle(engine, datetime.now(UTC))
        calls = {crm: dict(conn.calls) for crm, conn in engine.connectors.items()}
    finally:
        state.close()
    return result.summary, calls


def test_a_salesforce_only_job_reads_no_hubspot_and_the_full_cycle_still_finds_it(
    crms, monkeypatch, tmp_path
):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 120, 20)])
    add_rep_users(crms, "dana@northwind.example")
    add_ready_contact(crms, 0)  # a HubSpot contact, sales-ready
    ready_lead(crms, 1)  # a Salesforce lead, sales-ready

    fast, calls = _cycle(crms, monkeypatch, cfg, ("salesforce",))
    assert fast.people_pulled == {"hubspot": 0, "salesforce": 1} and fast.handed_off == 1
    reads = [n for n in calls["hubspot"] if "/properties/" not in n and "/owners" not in n]
    assert reads == [], calls["hubspot"]  # HubSpot: owners (cached an hour) and the daily mapping check only

    _cycle(crms, monkeypatch, cfg, ("salesforce",))  # reads back the task: Task described once
    idle, calls = _cycle(crms, monkeypatch, cfg, ("salesforce",))
    assert idle.handed_off == 0 and sum(calls["hubspot"].values()) == 0
    sf = calls["salesforce"]  # the pass, the activity and the outcome check: one Composite call each
    assert sf["POST /services/data/v62.0/composite"] == 3 and not any("describe" in n for n in sf), sf

    full, _ = _cycle(crms, monkeypatch, cfg, None)  # HubSpot's watermark never moved: its contact is found
    assert full.people_pulled["hubspot"] == 1 and full.handed_off == 1
    assert len(crms.sf_tasks()) == 2
