"""Sales-ready definitions through the real CLI, and ``handoff explain PERSON`` on the state
a real cycle against both sandboxes left (explain itself calls no CRM)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.cli import main
from tests.integration.conftest import add_lead, add_ready_contact, add_rep_users, mapping_dir, rep, sync_json

DANA = "dana@northwind.example"
BEN = "ben@northwind.example"
# no fit points: only a definition can make this contact sales-ready
PLAIN = {
    "jobtitle": "Analyst",
    "company": "Initech",
    "industry": "RETAIL",
    "lifecyclestage": "marketingqualifiedlead",
}


def contact(crms, i: int, **props: str) -> str:
    values = {"email": f"p{i}@initech{i}.example", "firstname": f"Pat{i}", "lastname": f"Plain{i}", **PLAIN}
    return crms.hs_store.add_contact({**values, **props})


def event(crms, cid: str, kind: str, days_ago: float, title: str = "") -> None:
    at = datetime.now(UTC) - timedelta(days=days_ago)
    crms.hs_store.add_event(kind, cid, at, {"hs_title": title or kind})


def explain(crms, monkeypatch, cfg, *argv: str) -> tuple[int, str, str]:
    """``handoff explain`` with the state of the cycles, and no CRM reachable."""
    for key, value in crms.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HUBSPOT_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", "https://127.0.0.1:9")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["explain", *argv, "--config", str(cfg)])
    return code, out.getvalue(), err.getvalue()


def explain_json(crms, monkeypatch, cfg, ref: str) -> dict[str, Any]:
    code, out, err = explain(crms, monkeypatch, cfg, ref, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_a_webinar_alone_is_handed_off_and_the_json_brief_and_explain_name_the_definition(
    crms, monkeypatch, tmp_path
):
    cfg = mapping_dir(tmp_path, reps=[rep(DANA, "hubspot")])
    owner, _ = add_rep_users(crms, DANA)
    cid = contact(crms, 1)
    event(crms, cid, "e_attended_webinar", 3, "Product webinar")

    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0, summary["errors"]
    [handoff] = summary["plan"]
    assert handoff["definitions"] == ["Attended a webinar"] and handoff["score"] == 20
    [task] = crms.hs_tasks()
    assert task.properties["hubspot_owner_id"] == owner
    assert task.properties["hs_task_body"].startswith(
        "Sales-ready by definition:\n- Attended a webinar: 1 x webinar attended in 60 days\n\n"
    )

    data = explain_json(crms, monkeypatch, cfg, "P1@Initech1.example")  # any case
    assert data["definitions_met"] == ["Attended a webinar"]
    assert data["records"]["hubspot"]["id"] == cid
    assert data["stage"] == "sql" and data["blockers"] == ["stage sql is not eligible"]  # handed off
    assert data["routing"]["decision"].startswith(f"handed off to {DANA} (episode 1, ")
    [h] = data["handoffs"]
    assert h["rep"] == DANA and h["open"] and h["status"] == "done" and h["crm"] == "hubspot"
    webinar = next(d for d in data["definitions"] if d["name"] == "Attended a webinar")
    assert webinar["met"] and webinar["conditions"][0]["found"] == "1 x webinar attended in 60 days"


def test_explain_a_person_kept_in_nurture_says_which_rep_was_full(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(DANA, "hubspot", minutes=20, per_lead=20)])  # 1 a week
    add_rep_users(crms, DANA)
    add_ready_contact(crms, 1)  # score 65: first in the queue
    waiting = contact(crms, 2)
    event(crms, waiting, "e_attended_webinar", 3)

    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and summary["handed_off"] == 1 and summary["kept_in_nurture"] == 1

    code, out, err = explain(crms, monkeypatch, cfg, waiting)  # by HubSpot id
    assert code == 0, err
    assert "Pat2 Plain2 <p2@initech2.example>" in out
    assert "  [x] Attended a webinar" in out and "  [ ] Downloads with a senior title" in out
    assert (
        f"routing: kept in nurture: every eligible rep is at weekly capacity ({DANA} is full (1 of 1 this week))"
        in out
    )
    data = explain_json(crms, monkeypatch, cfg, f"hubspot:{waiting}")
    assert data["handoffs"] == [] and data["queue"]["score"] == 20
    assert data["routing"]["reps"] == [
        {
            "rep": DANA,
            "owner": False,
            "eligible": True,
            "why": "eligible",
            "unavailable": None,
            "capacity": 1,
            "used": 1,
            "left": 0,
            "full": True,
        }
    ]


def test_explain_a_person_kept_in_nurture_says_why_no_rep_is_eligible(crms, monkeypatch, tmp_path):
    reps = [rep(DANA, "hubspot", territories=["Germany"]), rep(BEN, "hubspot", active=False)]
    cfg = mapping_dir(tmp_path, reps=reps)
    add_rep_users(crms, DANA)
    add_rep_users(crms, BEN)
    cid = add_ready_contact(crms, 1)  # in the United States

    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and summary["handed_off"] == 0 and summary["kept_in_nurture"] == 1

    code, out, err = explain(crms, monkeypatch, cfg, "lead1@acme1.example")
    assert code == 0, err
    assert (
        "routing: kept in nurture: no eligible rep ("
        f"{DANA}: territory: country United States is not in Germany; {BEN}: inactive in reps.yaml)"
    ) in out
    assert "  [x] Score reaches the threshold" in out
    data = explain_json(crms, monkeypatch, cfg, cid)
    assert data["sales_ready"] and data["score"] == 65
    assert [r["eligible"] for r in data["routing"]["reps"]] == [False, False]


def test_explain_a_person_not_yet_sales_ready_points_forward(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(DANA, "hubspot")])
    add_rep_users(crms, DANA)
    cid = contact(crms, 3, jobtitle="VP Operations")  # Senior title: 20 points
    for _ in range(2):  # +15: 35 of 60
        event(crms, cid, "e_downloaded_content", 4, "Pricing guide")

    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and summary["handed_off"] == 0 and summary["kept_in_nurture"] == 0

    data = explain_json(crms, monkeypatch, cfg, "p3@initech3.example")
    assert not data["sales_ready"] and data["score"] == 35 and data["definitions_met"] == []
    assert data["nearest"] == "Downloads with a senior title"
    assert data["missing"] == ["1 more content download within 30 days"]
    assert data["next_step"] == "Downloads with a senior title: 1 more content download within 30 days"
    assert data["routing"]["decision"] == (
        "not sales-ready: Downloads with a senior title: 1 more content download within 30 days"
    )
    assert data["queue"] is None and data["handoffs"] == []
    code, out, _ = explain(crms, monkeypatch, cfg, "p3@initech3.example")
    assert "      no  3 x content download within 30 days - missing: 1 more content download" in out


def test_explain_someone_the_state_does_not_hold_is_one_line_exit_1(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(DANA, "hubspot")])
    add_rep_users(crms, DANA)
    contact(crms, 4)
    assert sync_json(crms, monkeypatch, cfg)[0] == 0
    code, out, err = explain(crms, monkeypatch, cfg, "nobody@nowhere.example")
    assert code == 1 and out == ""
    assert err.startswith("error: no person 'nobody@nowhere.example' in the state (")
    assert len(err.strip().splitlines()) == 1


def test_explain_by_salesforce_id_merges_both_records_and_shows_each_stage(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(DANA, "salesforce")])
    _, user = add_rep_users(crms, DANA)
    hs_id = add_ready_contact(crms, 5)
    lead = add_lead(crms, 5)  # the same person: same email

    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and summary["handed_off"] == 1, summary["errors"]

    data = explain_json(crms, monkeypatch, cfg, f"salesforce:{lead}")
    assert data["records"]["hubspot"]["id"] == hs_id and data["records"]["salesforce"]["id"] == lead
    assert data["records"]["salesforce"]["owner"] == DANA  # the owners cache names the user
    assert set(data["stages"]) == {"hubspot", "salesforce"} and data["stage"] == "sql"
    assert data["profile"]["email"] == "lead5@acme5.example" and data["profile"]["title"] == "VP Marketing"
    [h] = data["handoffs"]
    assert h["crm"] == "salesforce" and h["rep"] == DANA
    [task] = crms.sf_tasks()
    assert h["task_id"] == task["Id"] and task["OwnerId"] == user and task["WhoId"] == lead
    assert data["routing"]["decision"].startswith(f"handed off to {DANA} (episode 1, ")
    assert explain_json(crms, monkeypatch, cfg, hs_id)["person_key"] == data["person_key"]


def test_explain_says_when_the_existing_owner_is_full(crms, monkeypatch, tmp_path):
    reps = [rep(DANA, "hubspot", minutes=20, per_lead=20), rep(BEN, "hubspot", territories=["Germany"])]
    cfg = mapping_dir(tmp_path, reps=reps)
    owner, _ = add_rep_users(crms, DANA)
    add_rep_users(crms, BEN)
    add_ready_contact(crms, 1)  # score 65: routed first, to Dana (Ben covers Germany only)
    owned = contact(crms, 6, hubspot_owner_id=owner, country="United States")
    event(crms, owned, "e_attended_webinar", 2)

    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and summary["handed_off_per_rep"] == {DANA: 1} and summary["kept_in_nurture"] == 1

    code, out, err = explain(crms, monkeypatch, cfg, owned)
    assert code == 0, err
    assert (
        "routing: kept in nurture: every eligible rep is at weekly capacity "
        f"({DANA} (the existing owner) is full (1 of 1 this week))"
    ) in out
    assert f"  existing owner: {DANA}" in out
    assert f"  {BEN}: not eligible: territory: country United States is not in Germany; 0 of 6 used" in out


def test_a_definition_met_without_an_email_is_set_aside_with_the_reason(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(DANA, "hubspot")])
    add_rep_users(crms, DANA)
    cid = crms.hs_store.add_contact({"firstname": "Noa", "lastname": "Mail", **PLAIN})  # no email
    event(crms, cid, "e_attended_webinar", 2)  # 20 points: only the definition makes them ready

    _, summary = sync_json(crms, monkeypatch, cfg)
    assert summary["handed_off"] == 0 and summary["set_aside"] == 1, summary
    assert summary["nurture"][0]["reason"] == "set aside: no email address"
    data = explain_json(crms, monkeypatch, cfg, cid)
    assert data["definitions_met"] == ["Attended a webinar"] and data["blockers"] == ["missing email"]
    assert data["routing"]["decision"] == "set aside: no email address"


def test_explain_refresh_reads_the_records_again_and_writes_nothing(crms, monkeypatch, tmp_path):
    """--refresh: the person's records as the CRMs hold them now (reads only); the state is
    not changed, and without --refresh the mirror's copy is explained as before."""
    cfg = mapping_dir(tmp_path, reps=[rep(DANA, "salesforce")])
    add_rep_users(crms, DANA)
    cid = contact(crms, 9)
    lead = add_lead(crms, 9, Email="p9@initech9.example", Title="Analyst")
    assert sync_json(crms, monkeypatch, cfg)[0] == 0
    crms.hs_store.update_contact(cid, {"jobtitle": "VP Operations"})  # changed after the cycle
    crms.sf_store.update("Lead", lead, {"Title": "Chief Data Officer"})

    stale = explain_json(crms, monkeypatch, cfg, "p9@initech9.example")
    assert stale["profile"]["title"] == "Analyst"
    for key, value in crms.env.items():
        monkeypatch.setenv(key, value)  # the CRMs reachable this time
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["explain", "p9@initech9.example", "--refresh", "--json", "--config", str(cfg)])
    assert code == 0, err.getvalue()
    fresh = json.loads(out.getvalue())
    assert fresh["profile"]["title"] in ("VP Operations", "Chief Data Officer")  # each CRM's rule decides
    assert "Senior title" in [r["rule"] for r in fresh["reasons"]]
    again = explain_json(crms, monkeypatch, cfg, "p9@initech9.example")
    assert again["profile"]["title"] == "Analyst"  # the mirror was not written
