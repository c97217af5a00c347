"""`handoff report` after a real cycle: a stage is reached only where an entry was recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep, run_cli, sync_json


def test_report_counts_only_recorded_stage_entries(crms, tmp_path, monkeypatch):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 40, 20)])
    add_rep_users(crms, "dana@northwind.example")
    add_ready_contact(crms, 1)  # an MQL that is handed off: mql, then sql
    crms.hs_store.add_contact(  # a customer from the start: never an opportunity in any record
        {"email": "won@globex.example", "firstname": "Wen", "lastname": "Won", "lifecyclestage": "customer"},
        created_at=datetime.now(UTC) - timedelta(days=30),
    )
    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and summary["handed_off"] == 1

    code, out, err = run_cli(crms, monkeypatch, "report", "--json", "--config", str(cfg))
    assert code == 0, err
    data = json.loads(out)
    assert {s: n for s, n in data["reached"].items() if n} == {"mql": 1, "sql": 1, "customer": 1}
    conversion = {
        (c["from"], c["to"]): (c["reached_from"], c["reached_to"], c["rate"]) for c in data["conversion"]
    }
    assert conversion == {
        ("subscriber", "lead"): (0, 0, None),
        ("lead", "mql"): (0, 0, None),
        ("mql", "sql"): (1, 1, 1.0),
        ("sql", "opportunity"): (1, 0, 0.0),
        ("opportunity", "customer"): (0, 0, None),  # not 100%: nobody was an opportunity
    }
    assert "only when crm-handoff recorded the person entering it" in data["basis"]

    code, out, _ = run_cli(crms, monkeypatch, "report", "--config", str(cfg))
    assert code == 0
    assert "opportunity -> customer  0             0                -" in out
    assert "a stage counts as reached only when crm-handoff recorded" in " ".join(out.split())
