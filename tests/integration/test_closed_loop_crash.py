"""Kill the real CLI at each write of a reassignment, then rerun: one new task per breach,
the old task closed once, no outcome lost; a task deleted by hand; a rep acting late."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from connectors.sandbox_server import serve
from tests.integration.conftest import (
    Crms,
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)
from tests.integration.test_crash import SF, KillSwitch

A = "ana@northwind.example"
B = "ben@northwind.example"
SLA = {"first_touch_within_hours": 8, "on_breach": "reassign", "max_reassignments": 1}
HS_TASKS = "/crm/v3/objects/tasks/batch/update"
HS_CONTACTS = "/crm/v3/objects/contacts/batch/update"


def _setup(crms: Crms, tmp_path, people: int = 2):
    today = datetime.now(UTC).date()
    reps = [
        rep(A, "hubspot", 120, 20, timezone="UTC"),
        rep(B, "salesforce", 120, 20, timezone="UTC", availability={"out_of_office": [str(today)]}),
    ]
    ids = {r["email"]: add_rep_users(crms, r["email"]) for r in reps}
    cfg = mapping_dir(tmp_path, reps=reps, handoff={"sla": SLA})
    contacts = [add_ready_contact(crms, i) for i in range(people)]
    return cfg, ids, contacts


def _cli(env: dict[str, str], cfg: str, as_of: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "sync.cli", "sync", "--once", "--json", "--config", cfg, "--as-of", as_of]
    env = {**os.environ, **env, "HANDOFF_LOG_LEVEL": "warning"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _hs_tasks(crms: Crms) -> list[dict]:
    return [t["properties"] | {"id": t["id"]} for t in crms.hs_store.tasks()]


KILLS = [
    ("salesforce", "PATCH", f"{SF}/Task/Handoff_Key__c", 1, True),  # the new task
    ("salesforce", "PATCH", f"{SF}/Task/Handoff_Key__c", 1, False),
    ("hubspot", "POST", HS_TASKS, 1, True),  # closing A's task as reassigned
    ("hubspot", "POST", HS_TASKS, 1, False),
    ("hubspot", "POST", HS_CONTACTS, 1, False),  # the handed-off status (owner B)
    ("hubspot", "POST", HS_CONTACTS, 2, False),  # the outcome fields
]


@pytest.mark.parametrize(
    ("crm", "method", "path", "nth", "before"),
    KILLS,
    ids=[f"{p.rsplit('/', 2)[-2]}-{n}-{'before' if b else 'after'}" for _, _, p, n, b in KILLS],
)
def test_kill_at_each_reassignment_write_then_rerun(
    crms, monkeypatch, tmp_path, crm, method, path, nth, before
):
    cfg, ids, _ = _setup(crms, tmp_path)
    code, week = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and week["handed_off_per_rep"] == {A: 2}, week
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()

    target = crms.sf if crm == "salesforce" else crms.hs
    switch = KillSwitch(target, method, path, nth, before)
    server = serve(switch, tls=crm == "salesforce")
    env = dict(crms.env)
    if crm == "salesforce":
        env |= {"SALESFORCE_INSTANCE_URL": server.url, "SALESFORCE_CA_BUNDLE": server.ca_bundle or ""}
    else:
        env["HUBSPOT_BASE_URL"] = server.url
    try:
        switch.proc = _cli(env, str(cfg), later)
        switch.proc.communicate(timeout=120)
        assert switch.fired.is_set(), "the kill point was never reached"
        rerun = _cli(env, str(cfg), later)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
    finally:
        server.stop()
    code, again = sync_json(crms, monkeypatch, cfg, "--as-of", later)
    assert code == 0 and again["follow_up"]["reassigned"] == 0, again["follow_up"]

    sf_keys = Counter(t["Handoff_Key__c"] for t in crms.sf_tasks())
    assert len(sf_keys) == 2 and set(sf_keys.values()) == {1}  # one new task per breach
    assert all(k.endswith(".r1") for k in sf_keys)
    assert {t["OwnerId"] for t in crms.sf_tasks()} == {ids[B][1]}
    old = _hs_tasks(crms)
    assert len(old) == 2 and {t["hs_task_status"] for t in old} == {"COMPLETED"}
    assert all(t["hs_task_body"].count("Reassigned to Ben") == 1 for t in old)  # closed once
    outcomes = {c["crm_handoff_outcome"] for c in crms.hs_store.contacts()}
    assert outcomes == {"reassigned"}  # no outcome lost
    code, out, err = run_cli(crms, monkeypatch, "report", "--json", "--config", str(cfg))
    report = json.loads(out)["outcomes"]
    assert report["reassigned"] == 2 and report["per_rep"][B]["handoffs"] == 2


def test_a_task_deleted_by_hand_returns_the_lead_to_nurture(crms, monkeypatch, tmp_path):
    cfg, _, _ = _setup(crms, tmp_path, people=1)
    code, _ = sync_json(crms, monkeypatch, cfg)
    task = _hs_tasks(crms)[0]
    crms.hubspot().crm.objects.tasks.basic_api.archive(task["id"])  # deleted in HubSpot's UI
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    code, week = sync_json(crms, monkeypatch, cfg, "--as-of", later)
    assert code == 0, week["errors"]
    assert week["follow_up"]["deleted"] == 1 and week["follow_up"]["reassigned"] == 0
    contact = crms.hs_store.contacts()[0]
    assert contact["crm_handoff_status"] == "back in nurture"
    assert contact["crm_handoff_outcome"] == "deleted" and "deleted" in contact["crm_handoff_reason"]
    assert crms.sf_tasks() == []  # not handed to anyone else: the rep's decision holds
    code, again = sync_json(crms, monkeypatch, cfg, "--as-of", later)
    assert code == 0 and again["handed_off"] == 0 and again["follow_up"]["deleted"] == 0


def test_a_rep_who_completes_after_the_reassignment_is_noted_not_undone(crms, monkeypatch, tmp_path):
    cfg, ids, _ = _setup(crms, tmp_path, people=1)
    sync_json(crms, monkeypatch, cfg)
    later = datetime.now(UTC) + timedelta(days=2)
    code, week = sync_json(crms, monkeypatch, cfg, "--as-of", later.isoformat())
    assert week["follow_up"]["reassigned"] == 1
    task = _hs_tasks(crms)[0]
    crms.hs_store.complete_task(task["id"], at=later + timedelta(hours=1), outcome="worked")  # A, too late
    code, after = sync_json(crms, monkeypatch, cfg, "--as-of", (later + timedelta(hours=2)).isoformat())
    assert code == 0, after["errors"]
    assert after["follow_up"]["late"] == 1 and after["follow_up"]["reassigned"] == 0
    assert [t["OwnerId"] for t in crms.sf_tasks()] == [ids[B][1]]  # the lead stays with B
    code, out, _ = run_cli(crms, monkeypatch, "report", "--json", "--config", str(cfg))
    o = json.loads(out)["outcomes"]
    assert o["late_after_reassignment"] == 1 and o["per_rep"][A]["reassigned"] == 1
    assert o["per_rep"][A]["acted_on_within_sla"] == 0


def test_a_salesforce_task_deleted_by_hand_is_read_from_the_recycle_bin(crms, monkeypatch, tmp_path):
    """queryAll returns the deleted Task (IsDeleted) in the same one-call check."""
    reps = [rep(A, "salesforce", 120, 20, timezone="UTC")]
    add_rep_users(crms, A)
    cfg = mapping_dir(tmp_path, reps=reps, handoff={"sla": SLA | {"on_breach": "notify"}})
    add_ready_contact(crms, 0)
    code, _ = sync_json(crms, monkeypatch, cfg)
    (task,) = crms.sf_tasks()
    crms.sf_store.delete("Task", task["Id"])  # deleted in Salesforce's UI: in the Recycle Bin
    code, week = sync_json(crms, monkeypatch, cfg)  # before any SLA is due
    assert code == 0, week["errors"]
    assert week["follow_up"]["deleted"] == 1
    contact = crms.hs_store.contacts()[0]
    assert contact["crm_handoff_outcome"] == "deleted" and contact["crm_handoff_status"] == "back in nurture"
