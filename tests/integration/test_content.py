"""The content library through the real CLI against the sandboxes: the brief recommends the
next gate's assets (never the whitepaper the lead downloaded, nor its retired edition), and
once the lead clicks one in an email, ``handoff report --json`` counts it used."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import yaml

from mappings.loader import default_dir
from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep, run_cli, sync_json

REP = "sam@northwind.example"
ROI, PLAN = "https://northwind.example/roi", "https://northwind.example/implementation"


def _content_without_behaviour() -> dict[str, object]:
    """The shipped ``content`` without its behaviour rule (a demo request would reach decision by itself)."""
    content = yaml.safe_load((default_dir() / "handoff.yaml").read_text())["content"]
    return {**content, "behaviour": []}


def _report(crms, monkeypatch, cfg) -> dict[str, object]:
    code, out, err = run_cli(crms, monkeypatch, "report", "--json", "--config", str(cfg))
    assert code == 0, err
    return json.loads(out)["content"]


def test_the_next_gate_is_recommended_and_a_click_on_it_counts_as_used(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(REP, "hubspot")], handoff={"content": _content_without_behaviour()})
    add_rep_users(crms, REP)
    t0 = datetime.now(UTC)
    cid = add_ready_contact(crms, 1, now=t0, lifecyclestage="lead")  # a lead: awareness by stage
    crms.hs_store.add_event(
        "e_downloaded_content", cid, t0 - timedelta(hours=3), {"hs_title": "Security whitepaper"}
    )

    code, first = sync_json(crms, monkeypatch, cfg, "--as-of", t0.isoformat())
    assert code == 0 and first["handed_off"] == 1, first["errors"]
    (task,) = crms.hs_tasks()
    body = task.properties["hs_task_body"]
    content = body[body.index("Content to use:") :]
    assert (
        f"- Pricing and ROI calculator {ROI}" in content
        and f"- Implementation plan and timeline {PLAN}" in content
    )
    assert "northwind.example/security" not in content  # neither the paper downloaded nor its 2023 edition

    before = _report(crms, monkeypatch, cfg)
    rows = {a["id"]: a for a in before["assets"]}
    assert (before["handoffs"], before["recommended"], before["used"]) == (1, 2, 0)
    assert (rows["roi-calculator"]["recommended"], rows["roi-calculator"]["used"]) == (1, 0)
    assert rows["security-whitepaper-2023"]["status"] == "retired"
    assert before["never_used"] == ["roi-calculator", "implementation-plan"]

    # an hour later the lead clicks the calculator in a marketing email (tracking parameters on the url)
    crms.hs_store.add_email_event(
        "lead1@acme1.example", "CLICK", t0 + timedelta(hours=1), url=f"{ROI}?utm_source=nurture"
    )
    code, second = sync_json(crms, monkeypatch, cfg, "--as-of", (t0 + timedelta(hours=2)).isoformat())
    assert code == 0 and second["handed_off"] == 0, second["errors"]

    after = _report(crms, monkeypatch, cfg)
    rows = {a["id"]: a for a in after["assets"]}
    assert (after["handoffs"], after["recommended"], after["used"]) == (1, 2, 1)
    assert (rows["roi-calculator"]["recommended"], rows["roi-calculator"]["used"]) == (1, 1)
    assert (rows["implementation-plan"]["recommended"], rows["implementation-plan"]["used"]) == (1, 0)
    assert after["never_used"] == ["implementation-plan"]
    assert after["never_recommended"] == ["product-tour", "security-whitepaper", "contoso-story"]

    code, out, err = run_cli(crms, monkeypatch, "report", "--config", str(cfg))
    assert code == 0, err
    assert "content: 2 recommended in 1 handoffs; 1 used by the lead" in out
    assert "  recommended, never used: implementation-plan" in out


def test_a_click_before_the_handoff_is_no_use(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(REP, "hubspot")])
    add_rep_users(crms, REP)
    t0 = datetime.now(UTC)
    add_ready_contact(crms, 2, now=t0)  # an MQL with a demo request: decision
    crms.hs_store.add_email_event("lead2@acme2.example", "CLICK", t0 - timedelta(hours=2), url=PLAN)

    code, first = sync_json(crms, monkeypatch, cfg, "--as-of", t0.isoformat())
    assert code == 0 and first["handed_off"] == 1, first["errors"]
    (task,) = crms.hs_tasks()
    body = task.properties["hs_task_body"]
    assert ROI in body and PLAN not in body[body.index("Content to use:") :]  # clicked already: consumed

    code, _ = sync_json(crms, monkeypatch, cfg, "--as-of", (t0 + timedelta(hours=2)).isoformat())
    assert code == 0
    got = _report(crms, monkeypatch, cfg)
    assert (got["recommended"], got["used"]) == (1, 0) and got["never_used"] == ["roi-calculator"]
