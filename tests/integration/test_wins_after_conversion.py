"""Wins come back: a converted lead's opportunity drives the person's stage in both CRMs
and in ``handoff report``, forward and back, through the real CLI and both sandboxes."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import (
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)

PEOPLE = 20
WON = 5


def _stages(crms: Any) -> dict[str, str]:
    """HubSpot lifecyclestage by email."""
    return {c["email"]: c.get("lifecyclestage") or "" for c in crms.hs_store.contacts()}


def _report(crms: Any, monkeypatch: Any, cfg: Any) -> dict[str, Any]:
    code, out, err = run_cli(crms, monkeypatch, "report", "--json", "--config", str(cfg))
    assert code == 0, err
    return dict(json.loads(out))


def _conversion(data: dict[str, Any], a: str, b: str) -> tuple[int, int]:
    row = next(c for c in data["conversion"] if (c["from"], c["to"]) == (a, b))
    return row["reached_from"], row["reached_to"]


def _handed_off_and_converted(crms: Any, monkeypatch: Any, cfg: Any) -> dict[str, str]:
    """20 HubSpot contacts handed off (Salesforce leads created, SQL in HubSpot), then
    converted: 15 to open opportunities, 5 to Closed Won. Email -> opportunity id."""
    add_rep_users(crms, "dana@northwind.example")
    for i in range(PEOPLE):
        add_ready_contact(crms, i)
    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and first["handed_off"] == PEOPLE, first["errors"]
    assert set(_stages(crms).values()) == {"salesqualifiedlead"}
    opps = {}
    for i, lead in enumerate(sorted(crms.sf_store.all("Lead"), key=lambda r: r["Email"])):
        stage = "Closed Won" if i < WON else "Prospecting"
        converted = crms.sf_store.convert_lead(lead["Id"], opportunity={"StageName": stage})
        opps[lead["Email"]] = converted["ConvertedOpportunityId"]
    return opps


def test_converted_wins_become_customers_in_hubspot_and_the_report(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 600, 20)])
    opps = _handed_off_and_converted(crms, monkeypatch, cfg)
    emails = sorted(opps)

    code, second = sync_json(crms, monkeypatch, cfg)
    assert code == 0, second["errors"]
    stages = _stages(crms)
    assert [stages[e] for e in emails[:WON]] == ["customer"] * WON
    assert [stages[e] for e in emails[WON:]] == ["opportunity"] * (PEOPLE - WON)
    data = _report(crms, monkeypatch, cfg)
    assert data["current"]["customer"] == WON and data["current"]["opportunity"] == PEOPLE - WON
    assert data["current"]["sql"] == 0
    assert _conversion(data, "sql", "opportunity") == (PEOPLE, PEOPLE - WON)
    assert _conversion(data, "opportunity", "customer") == (PEOPLE - WON, 0)

    # only the opportunity moves (the lead and the contact are untouched): one cycle later
    # the person is a customer
    late = emails[WON]
    crms.sf_store.update("Opportunity", opps[late], {"StageName": "Closed Won"})
    code, third = sync_json(crms, monkeypatch, cfg)
    assert code == 0, third["errors"]
    assert _stages(crms)[late] == "customer"
    data = _report(crms, monkeypatch, cfg)
    assert data["current"]["customer"] == WON + 1
    assert _conversion(data, "opportunity", "customer") == (PEOPLE - WON, 1)

    code, idle = sync_json(crms, monkeypatch, cfg)  # nothing moved: nothing written
    assert code == 0 and sum(idle["people_updated"].values()) == 0


def test_a_won_opportunity_moving_back_is_reflected(crms, monkeypatch, tmp_path):
    """Back = the opportunity leaves Closed Won. The person's stage (report, Salesforce side)
    follows it; HubSpot's forward-only lifecyclestage follows where allow_backward says
    (crm-handoff clears it, then sets it), and otherwise stays."""
    backward = [["sql", "nurture"], ["mql", "nurture"], ["customer", "opportunity"]]
    cfg = mapping_dir(
        tmp_path,
        reps=[rep("dana@northwind.example", "salesforce", 600, 20)],
        lifecycle={"allow_backward": backward},
    )
    opps = _handed_off_and_converted(crms, monkeypatch, cfg)
    emails = sorted(opps)
    code, _ = sync_json(crms, monkeypatch, cfg)
    assert code == 0
    back = emails[0]
    assert _stages(crms)[back] == "customer"

    crms.sf_store.update("Opportunity", opps[back], {"StageName": "Negotiation/Review"})
    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0, summary["errors"]
    assert _stages(crms)[back] == "opportunity"
    data = _report(crms, monkeypatch, cfg)
    assert data["current"]["customer"] == WON - 1
    assert data["current"]["opportunity"] == PEOPLE - WON + 1
    assert data["reached"]["customer"] == WON  # reached stays reached

    code, idle = sync_json(crms, monkeypatch, cfg)  # settled: no flip-flop
    assert code == 0 and sum(idle["people_updated"].values()) == 0
    assert _stages(crms)[back] == "opportunity"

    # without the pair, HubSpot keeps customer; the report still follows the opportunity
    crms.sf_store.update("Opportunity", opps[emails[1]], {"StageName": "Negotiation/Review"})
    cfg = mapping_dir(tmp_path, lifecycle={"allow_backward": backward[:2]})
    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0, summary["errors"]
    assert _stages(crms)[emails[1]] == "customer"
    assert _report(crms, monkeypatch, cfg)["current"]["customer"] == WON - 2
