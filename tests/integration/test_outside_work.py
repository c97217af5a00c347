"""Work assigned outside crm-handoff uses up capacity (reps.yaml ``outside_work``), read once per CRM.

Through the real CLI against both sandboxes: hand-assigned open tasks (and Salesforce
leads) count against a rep's week; completed ones give the capacity back; crm-handoff's
own tasks are counted once, from the ledger; each CRM is asked once per cycle, whatever
the number of reps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.hubspot.connector import HubSpotConnector
from connectors.salesforce.connector import SalesforceConnector
from tests.integration.conftest import (
    Crms,
    add_lead,
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    sync_json,
)

DANA, LEE, JO = "dana@northwind.example", "lee@northwind.example", "jo@northwind.example"
SAM, ANA = "sam@northwind.example", "ana@northwind.example"


def _config(tmp_path: Path, reps: list[dict[str, Any]], outside: dict[str, Any]) -> Path:
    cfg = mapping_dir(tmp_path, reps=reps)
    path = cfg / "reps.yaml"
    data = yaml.safe_load(path.read_text())
    data["outside_work"] = outside
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


class Reads:
    """What each cycle asked the CRMs about open work: statements seen and API calls made."""

    def __init__(self, crms: Crms, monkeypatch: pytest.MonkeyPatch) -> None:
        self.soql: list[str] = []  # aggregate statements the Salesforce sandbox ran
        self.searches: list[dict[str, Any]] = []  # open-task searches the HubSpot sandbox ran
        self.calls: dict[str, list[int]] = {"salesforce": [], "hubspot": []}  # API calls per open_work
        run, search = crms.sf_store.run, crms.hs_store.search

        def sf_run(plan: Any, include_deleted: bool = False) -> Any:
            if plan.aggregate is not None:
                self.soql.append(plan.sobject.name)
            return run(plan, include_deleted)

        def hs_search(object_type: str, request: dict[str, Any]) -> Any:
            filters = [f for g in request.get("filterGroups") or [] for f in g.get("filters") or []]
            if object_type == "tasks" and any(f["propertyName"] == "hs_task_status" for f in filters):
                self.searches.append(request)
            return search(object_type, request)

        monkeypatch.setattr(crms.sf_store, "run", sf_run)
        monkeypatch.setattr(crms.hs_store, "search", hs_search)
        for crm, cls in (("salesforce", SalesforceConnector), ("hubspot", HubSpotConnector)):
            monkeypatch.setattr(cls, "open_work", self._metered(crm, cls.open_work))

    def _metered(self, crm: str, method: Callable[..., dict[str, int]]) -> Callable[..., dict[str, int]]:
        def open_work(conn: Any, wanted: Any) -> dict[str, int]:
            before = sum(conn.calls.values())
            try:
                return method(conn, wanted)
            finally:
                self.calls[crm].append(sum(conn.calls.values()) - before)

        return open_work

    def reset(self) -> None:
        self.soql.clear()
        self.searches.clear()
        self.calls = {"salesforce": [], "hubspot": []}


def _sf_task(crms: Crms, owner: str, type_: str = "Call", status: str = "Not Started") -> str:
    return crms.sf_store.insert(
        "Task", {"Subject": "Follow up on the trial", "OwnerId": owner, "Type": type_, "Status": status}
    )


def _hs_task(crms: Crms, owner: str, type_: str = "CALL", status: str = "NOT_STARTED") -> str:
    props = {"hs_task_subject": "Follow up", "hubspot_owner_id": owner, "hs_task_type": type_}
    return crms.hs_store.add_engagement("tasks", {**props, "hs_task_status": status})


def _ready(crms: Crms, n: int, leads: bool = True) -> None:
    for i in range(n):
        add_ready_contact(crms, i, extra_events=i % 4)
        if leads:
            add_lead(crms, i)


def test_salesforce_rep_with_six_open_follow_ups_gets_none_until_some_are_done(crms, monkeypatch, tmp_path):
    cfg = _config(tmp_path, [rep(DANA, "salesforce", 120, 20)], {"salesforce": {"task_types": ["Call"]}})
    _, user = add_rep_users(crms, DANA)
    hand = [_sf_task(crms, user) for _ in range(6)]
    _sf_task(crms, user, type_="Email")  # another type: not counted
    _sf_task(crms, user, status="Completed")  # done: not counted
    _ready(crms, 8)
    reads = Reads(crms, monkeypatch)

    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0, first["errors"]
    assert first["qualified"] == 8 and first["handed_off"] == 0 and crms.sf_tasks() == []
    assert first["capacity_per_rep"][DANA] == {"capacity": 6, "used_before": 6, "assigned": 0, "left": 0}
    assert first["nurture_reasons"] == {"rep capacity: every eligible rep is at weekly capacity": 8}
    assert reads.soql == ["Task"] and reads.calls == {"salesforce": [1], "hubspot": []}
    assert reads.searches == []  # nothing configured for HubSpot: not asked

    for task in hand[:3]:
        crms.sf_store.update("Task", task, {"Status": "Completed"})
    code, second = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and second["handed_off_per_rep"] == {DANA: 3} and len(crms.sf_tasks()) == 3

    code, third = sync_json(crms, monkeypatch, cfg)  # 3 handed off + 3 open outside: full
    assert code == 0 and third["handed_off"] == 0
    assert third["capacity_per_rep"][DANA]["used_before"] == 6

    crms.sf_store.update("Task", hand[3], {"Status": "Completed"})
    reads.reset()
    code, fourth = sync_json(crms, monkeypatch, cfg)  # crm-handoff's 3 open tasks are not counted again
    assert code == 0 and fourth["handed_off_per_rep"] == {DANA: 1} and len(crms.sf_tasks()) == 4
    assert reads.soql == ["Task"] and reads.calls["salesforce"] == [1]


def test_hubspot_rep_with_four_open_tasks_gets_two_and_own_tasks_count_once(crms, monkeypatch, tmp_path):
    outside = {"hubspot": {"task_types": ["CALL", "TODO"]}}
    cfg = _config(tmp_path, [rep(SAM, "hubspot", 120, 20)], outside)
    owner, _ = add_rep_users(crms, SAM)
    hand = [_hs_task(crms, owner, t) for t in ("CALL", "CALL", "TODO", "TODO")]
    _hs_task(crms, owner, "EMAIL")  # another type: not counted
    _hs_task(crms, owner, status="COMPLETED")  # done: not counted
    _ready(crms, 8, leads=False)
    reads = Reads(crms, monkeypatch)

    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0, first["errors"]
    assert first["handed_off_per_rep"] == {SAM: 2}
    assert first["capacity_per_rep"][SAM] == {"capacity": 6, "used_before": 4, "assigned": 2, "left": 0}
    own = [t for t in crms.hs_tasks() if t.properties.get("crm_handoff_key")]
    assert len(own) == 2 and {t.properties["hubspot_owner_id"] for t in own} == {owner}
    assert len(reads.searches) == 1 and reads.calls == {"salesforce": [], "hubspot": [1]}
    (request,) = reads.searches
    filters = {f["propertyName"]: f for f in request["filterGroups"][0]["filters"]}
    assert filters["hubspot_owner_id"]["values"] == [owner] and request["limit"] == 200
    assert filters["crm_handoff_key"]["operator"] == "NOT_HAS_PROPERTY"

    for task in hand[:2]:
        crms.hs_store.update_object("tasks", task, {"hs_task_status": "COMPLETED"})
    code, second = sync_json(crms, monkeypatch, cfg)  # 2 handed off + 2 open outside (own 2 not again)
    assert code == 0 and second["handed_off_per_rep"] == {SAM: 2}
    assert second["capacity_per_rep"][SAM]["used_before"] == 4

    code, third = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and third["handed_off"] == 0
    assert len([t for t in crms.hs_tasks() if t.properties.get("crm_handoff_key")]) == 4


def test_many_reps_both_crms_leads_and_overrides_one_read_per_crm(crms, monkeypatch, tmp_path):
    outside = {
        "salesforce": {"task_types": ["Call"], "lead_statuses": ["Working - Contacted"]},
        "hubspot": {"task_types": "any"},
        "minutes_each": 30,  # an open item takes 30 minutes of the week's 120
    }
    reps = [
        rep(DANA, "salesforce", 120, 20),
        rep(LEE, "salesforce", 120, 20, outside_work={"salesforce": {"task_types": "any"}}),
        rep(JO, "salesforce", 120, 20, outside_work={}),  # counts nothing
        rep(SAM, "hubspot", 120, 20),
        rep(ANA, "hubspot", 120, 20),
    ]
    cfg = _config(tmp_path, reps, outside)
    ids = {email: add_rep_users(crms, email) for email in (DANA, LEE, JO, SAM, ANA)}
    dana, lee, jo = ids[DANA][1], ids[LEE][1], ids[JO][1]
    _sf_task(crms, dana)
    _sf_task(crms, dana, type_="Email")  # Dana counts Call only
    lead = {"Status": "Working - Contacted", "Email": "worked@acme.example", "LastName": "Worked"}
    add_lead(crms, 900, owner=dana, **lead)  # an open lead Dana works
    add_lead(
        crms, 901, owner=dana, **{**lead, "Email": "ours@acme.example", "Handoff_Status__c": "handed off"}
    )
    add_lead(crms, 902, owner=dana, **{**lead, "Email": "conv@acme.example", "Status": "Nurture"})
    for t in ("Call", "Email", "Other", "Email"):
        _sf_task(crms, lee, type_=t)  # Lee's own block: any type, one lead each, no leads counted
    add_lead(crms, 903, owner=lee, **{**lead, "Email": "lee@acme.example"})
    for _ in range(12):
        _sf_task(crms, jo)  # Jo's own empty block: nothing counts
    for t in ("EMAIL", "TODO"):
        _hs_task(crms, ids[SAM][0], t)  # any type
    _hs_task(crms, ids[SAM][0], status="COMPLETED")
    reads = Reads(crms, monkeypatch)

    code, summary = sync_json(crms, monkeypatch, cfg, "--dry-run")
    assert code == 0, summary["errors"]
    used = {email: load["used_before"] for email, load in summary["capacity_per_rep"].items()}
    # Dana and Sam: 2 open items x 30 min, 60 left = 3 leads: 3 of 6 used; Lee: 4 tasks, one lead each
    assert used == {DANA: 3, LEE: 4, JO: 0, SAM: 3, ANA: 0}
    assert sorted(reads.soql) == ["Lead", "Task", "Task"]  # any-type, typed tasks, leads: one Composite
    assert reads.calls == {"salesforce": [1], "hubspot": [1]} and len(reads.searches) == 1


def test_off_by_default_no_read_at_all(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep(DANA, "salesforce", 120, 20)])
    _, user = add_rep_users(crms, DANA)
    for _ in range(6):
        _sf_task(crms, user)
    _ready(crms, 3)
    reads = Reads(crms, monkeypatch)
    code, summary = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and summary["handed_off_per_rep"] == {DANA: 3}
    assert reads.soql == [] and reads.searches == [] and reads.calls == {"salesforce": [], "hubspot": []}
