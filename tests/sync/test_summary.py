"""The cycle summary as a typed value: its JSON form round-trips, older and failed runs read."""

from __future__ import annotations

import json

from sync.summary import (
    CallSplit,
    CycleSummary,
    HandoffSummary,
    NurtureShown,
    RecordError,
    RepCapacity,
    RunSummary,
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
