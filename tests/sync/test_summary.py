"""The cycle summary as a typed value: its JSON form round-trips, older and failed runs read."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sync.state import StateStore
from sync.summary import (
    CallSplit,
    CycleSummary,
    HandoffSummary,
    NurtureShown,
    RecordError,
    RepCapacity,
    RunSummary,
)
from tests.integration.conftest import (  # noqa: F401  (crms: both sandboxes, a fixture)
    add_lead,
    add_ready_contact,
    add_rep_users,
    crms,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)

FULL = CycleSummary(
    run_id=3,
    dry_run=False,
    at="2026-12-02T10:00:00+00:00",
    stopped="SIGTERM",
    people_pulled={"hubspot": 10, "salesforce": 4},
    people_unchanged={"hubspot": 2, "salesforce": 0},
    activities_pulled=30,
    activities_new=12,
    profiles_scored=14,
    qualified=5,
    handed_off=2,
    handed_off_per_rep={"dana@x.example": 2},
    capacity_per_rep={"dana@x.example": RepCapacity(6, 1, 2, 3)},
    unavailable_reps={"kim@x.example": "inactive in reps.yaml"},
    kept_in_nurture=3,
    set_aside=1,
    nurture_reasons={"rep capacity: every eligible rep is at weekly capacity": 3},
    tasks_created={"hubspot": 0, "salesforce": 2},
    tasks_already_existed={"hubspot": 0, "salesforce": 0},
    people_created={"hubspot": 1, "salesforce": 0},
    people_updated={"hubspot": 4, "salesforce": 2},
    api_calls={"hubspot": 9, "salesforce": 5},
    rate_limit_wait_seconds={"hubspot": 0.25, "salesforce": 0.0},
    api_calls_split={"hubspot": CallSplit(7, 2), "salesforce": CallSplit(3, 2)},
    api_calls_per_1000={"hubspot": {"people_pulled": 700.0, "records_written": None}},
    errors=[RecordError("salesforce", "task k#1", "rejected")],
    plan=[HandoffSummary("Lee", "hs-1", 70, "dana@x.example", "existing owner", ["salesforce"], [])],
    nurture=[NurtureShown("Kim", "hs-2", 65, "rep capacity: every eligible rep is at weekly capacity")],
)


def test_json_round_trip_keeps_every_figure():
    stored = json.loads(json.dumps(FULL.to_json()))  # as the run record holds it
    assert CycleSummary.from_json(stored) == FULL
    assert stored["capacity_per_rep"]["dana@x.example"] == {
        "capacity": 6,
        "used_before": 1,
        "assigned": 2,
        "left": 3,
    }
    assert stored["api_calls_split"]["hubspot"] == {"pull": 7, "write": 2}
    assert stored["errors"] == [{"crm": "salesforce", "record": "task k#1", "reason": "rejected"}]


def test_a_run_recorded_by_an_older_version_reads_with_defaults():
    old = {"run_id": 1, "at": "2026-01-05T00:00:00+00:00", "handed_off": 4, "plan": [{"person": "x"}]}
    summary = CycleSummary.from_json(old)
    assert summary.handed_off == 4 and summary.kept_in_nurture == 0
    assert summary.rate_limit_wait_seconds == {} and summary.plan == []  # an unreadable entry is left out


def test_a_failed_run_carries_only_its_error():
    run = RunSummary.from_json({"error": "hubspot: HTTP 500", "job": "sync", "worker": "w1"})
    assert run.cycle is None and run.error == "hubspot: HTTP 500" and run.job == "sync"
    assert RunSummary.from_json(None).cycle is None
    annotated = RunSummary.from_json({**FULL.to_json(), "job": "sync", "worker": "w1"})
    assert annotated.cycle == FULL and annotated.worker == "w1"


def test_a_real_cycles_summary_round_trips_and_its_run_reads_back(crms, monkeypatch, tmp_path):  # noqa: F811
    """The summary of a real cycle against both sandboxes: what ``--json`` printed, what the run
    stored and what the typed value writes back are one and the same; a failed run beside it
    reads as its error in ``handoff status``."""
    add_rep_users(crms, "dana@northwind.example")
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "hubspot", 40, 20)])
    for i in range(3):  # dana has room for 2: one is kept in nurture on rep capacity
        add_ready_contact(crms, i, extra_events=1)
    add_lead(crms, 9)

    code, printed = sync_json(crms, monkeypatch, cfg)
    assert code == 0, printed["errors"]

    summary = CycleSummary.from_json(printed)
    assert json.loads(json.dumps(summary.to_json())) == printed
    assert list(summary.to_json()) == list(FULL.to_json())  # every key, in the order it is written
    assert summary.handed_off == 2 and summary.kept_in_nurture == 1
    assert summary.people_pulled == {"hubspot": 3, "salesforce": 1}
    assert summary.capacity_per_rep["dana@northwind.example"] == RepCapacity(2, 0, 2, 0)
    assert all(isinstance(h, HandoffSummary) for h in summary.plan) and len(summary.plan) == 2
    assert {c: s.pull + s.write for c, s in summary.api_calls_split.items()} == summary.api_calls

    state = StateStore(crms.env["HANDOFF_STATE_URL"])
    try:
        (run,) = state.recent_runs(1)
        assert run["summary"] == printed
        assert RunSummary.from_json(run["summary"]).cycle == summary
        failed = state.start_run(datetime.now(UTC))
        state.finish_run(failed, "failed", {"error": "hubspot: HTTP 500"}, datetime.now(UTC))
    finally:
        state.close()

    code, out, _ = run_cli(crms, monkeypatch, "status", "--json")
    last, first = json.loads(out)["runs"][:2]
    assert (last["status"], last["reason"], last["handed_off"], last["errors"]) == (
        "failed",
        "hubspot: HTTP 500",
        None,
        0,
    )
    assert (first["id"], first["handed_off"], first["kept_in_nurture"]) == (printed["run_id"], 2, 1)
    assert first["api_calls"] == printed["api_calls"]
