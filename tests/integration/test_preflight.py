"""Before a run's first write, the mapping is checked against the live CRMs (once a day)."""

from __future__ import annotations

import yaml

from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep, run_cli, sync_json


def _map_missing_property(cfg, crm: str) -> None:
    path = cfg / "fields.yaml"
    data = yaml.safe_load(path.read_text())
    extra = {
        "name": "budget",
        "rule": "two_way",
        "hubspot": "budget_nowhere",
        "salesforce": "Budget_Nowhere__c",
    }
    if crm == "hubspot":
        extra["salesforce"] = "Phone"
    else:
        extra["hubspot"] = "phone"
    data["fields"].append(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_field_mapped_to_a_missing_property_stops_the_run_before_any_write(crms, monkeypatch, tmp_path):
    for crm in ("hubspot", "salesforce"):
        cfg = mapping_dir(tmp_path / crm, reps=[rep("dana@northwind.example", "salesforce")])
        _map_missing_property(cfg, crm)
        if crm == "hubspot":
            add_rep_users(crms, "dana@northwind.example")
            add_ready_contact(crms, 1)

        code, _, err = run_cli(crms, monkeypatch, "sync", "--once", "--config", str(cfg))

        assert code == 2, err
        lines = [line for line in err.strip().splitlines() if line]
        assert len(lines) == (1 if crm == "hubspot" else 2) and "Traceback" not in err  # Lead, Contact
        missing = "budget_nowhere" if crm == "hubspot" else "Budget_Nowhere__c"
        assert all("fields.yaml:" in line and missing in line for line in lines)
        assert crms.sf_tasks() == [] and crms.hs_tasks() == []
        assert crms.salesforce().query("SELECT Id FROM Lead")["totalSize"] == 0


def test_the_check_is_made_once_then_remembered(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    add_rep_users(crms, "dana@northwind.example")
    add_ready_contact(crms, 1)
    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and first["handed_off"] == 1
    code, idle = sync_json(crms, monkeypatch, cfg)
    code2, idle2 = sync_json(crms, monkeypatch, cfg)
    assert code == code2 == 0
    assert idle["api_calls"] == idle2["api_calls"]  # no schema reads on later cycles
    assert sum(first["api_calls"].values()) > sum(idle["api_calls"].values())
