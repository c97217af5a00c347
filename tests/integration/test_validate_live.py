"""`handoff validate` with live credentials: the mapping checked against the sandbox CRMs."""

from __future__ import annotations

import re

from tests.integration.conftest import add_rep_users, mapping_dir, rep, run_cli


def test_validate_live_ok_then_each_missing_value_named_with_its_line(crms, monkeypatch, tmp_path):
    reps = [rep("dana@northwind.example", "salesforce"), rep("sam@northwind.example", "hubspot")]
    cfg = mapping_dir(tmp_path, reps=reps)
    add_rep_users(crms, "dana@northwind.example")
    add_rep_users(crms, "sam@northwind.example")
    code, out, err = run_cli(crms, monkeypatch, "validate", "--config", str(cfg))
    assert code == 0, err
    assert "the mapping matches the live hubspot and salesforce account(s)" in out

    lifecycle = cfg / "lifecycle.yaml"
    text = lifecycle.read_text().replace("[marketingqualifiedlead]}", "[marketing_qualified]}", 1)
    lifecycle.write_text(text.replace('lead_status: ["Marketing Qualified"]', 'lead_status: ["Hot Lead"]', 1))
    code, out, err = run_cli(crms, monkeypatch, "validate", "--config", str(cfg))
    assert code == 2
    lines = err.strip().splitlines()
    assert any(
        re.search(
            r"lifecycle\.yaml:\d+: stages\.mql\.hubspot\.lifecyclestage\[0\]: 'marketing_qualified' is not a contacts\.lifecyclestage value",
            ln,
        )
        for ln in lines
    ), err
    assert any(
        re.search(
            r"lifecycle\.yaml:\d+: stages\.mql\.salesforce\.lead_status\[0\]: 'Hot Lead' is not a Lead\.Status value",
            ln,
        )
        for ln in lines
    ), err
    assert "Traceback" not in err


def test_validate_live_names_reps_missing_in_their_crm(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("ghost@northwind.example", "salesforce")])
    code, _, err = run_cli(crms, monkeypatch, "validate", "--config", str(cfg))
    assert code == 2
    assert re.search(
        r"reps\.yaml:\d+: reps\[0\]\.email: no active salesforce user with email ghost@northwind\.example",
        err,
    ), err
    code, out, _ = run_cli(crms, monkeypatch, "validate", "--offline", "--config", str(cfg))
    assert code == 0 and out.startswith("ok:")
