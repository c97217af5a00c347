"""sync.judge: what a handoff's observations mean (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from crm_handoff.records import TaskState
from mappings.outcomes import OutcomeChoice, Outcomes, Sla
from sync.judge import Seen, judge
from sync.state import OutcomeRow

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
H = timedelta(hours=1)
OUTCOMES = Outcomes(
    choices=(
        OutcomeChoice(value="worked", label="Worked", action="keep"),
        OutcomeChoice(value="not_a_fit", label="Not a fit", action="nurture", offer_again_after_days=90),
        OutcomeChoice(value="wrong_rep", action="reroute"),
    ),
    give_back_if_rejected_within_hours=1,
)
SLA = Sla(first_touch_within_hours=8, on_breach="reassign", max_reassignments=1)
ROW = OutcomeRow("p#1", "p", "ana@x.example", T0, T0 + 8 * H, "open", "open")


def task(
    closed: bool = False,
    outcome: str | None = None,
    deleted: bool = False,
    done: datetime | None = None,
    modified: datetime = T0,
):
    status = "COMPLETED" if closed else "NOT_STARTED"
    return TaskState("p#1", "t1", status, closed, done, outcome, "o1", modified, deleted)


def test_nothing_seen_before_the_due_time_changes_nothing():
    d = judge(ROW, Seen(), OUTCOMES, SLA, T0 + 2 * H)
    assert d.changes == {} and d.action is None


def test_a_touch_in_time_is_acted_on_within_the_sla():
    d = judge(ROW, Seen(touch=(T0 + H, "call")), OUTCOMES, SLA, T0 + 2 * H)
    assert d.changes == {"first_touch_at": T0 + H, "first_touch_kind": "call", "sla": "met", "state": "acted"}
    late = judge(ROW, Seen(touch=(T0 + 9 * H, "email")), OUTCOMES, SLA, T0 + 10 * H)
    assert late.changes["sla"] == "missed" and late.action is None  # touched: nothing to reassign


def test_completed_without_an_outcome_is_worked_and_counts_as_the_touch():
    d = judge(ROW, Seen((task(closed=True, done=T0 + 3 * H),)), OUTCOMES, SLA, T0 + 4 * H)
    assert d.changes["state"] == "worked" and d.changes["first_touch_at"] == T0 + 3 * H
    assert d.changes["sla"] == "met" and d.action is None


def test_an_outcome_that_keeps_is_worked():
    d = judge(ROW, Seen((task(outcome="worked"),)), OUTCOMES, SLA, T0 + 2 * H)
    assert d.changes["state"] == "worked" and d.changes["outcome"] == "worked" and d.action is None


def test_a_rejection_returns_the_lead_and_gives_the_slot_back_only_when_quick():
    quick = judge(ROW, Seen((task(True, "not_a_fit", modified=T0 + 0.5 * H),)), OUTCOMES, SLA, T0 + 5 * H)
    assert quick.changes["state"] == "rejected" and quick.action == "nurture" and quick.reason == "Not a fit"
    assert quick.changes["gave_back"] is True and "first_touch_at" not in quick.changes  # not acted on
    assert quick.changes["decided_at"] == T0 + 0.5 * H  # when the rep picked it, not when it was read
    slow = judge(ROW, Seen((task(outcome="not_a_fit", modified=T0 + 2 * H),)), OUTCOMES, SLA, T0 + 2.5 * H)
    assert slow.changes["gave_back"] is False
    reroute = judge(ROW, Seen((task(outcome="wrong_rep"),)), OUTCOMES, SLA, T0 + 5 * H)
    assert reroute.action == "reroute" and reroute.changes["state"] == "rerouted"


def test_an_outcome_the_mapping_does_not_list_is_an_error_and_decides_nothing():
    d = judge(ROW, Seen((task(outcome="maybe_later"),)), OUTCOMES, SLA, T0 + 9 * H)
    assert (
        d.error == "outcome 'maybe_later' is not one of handoff.yaml outcomes (worked, not_a_fit, wrong_rep)"
    )
    assert d.changes == {} and d.action is None


def test_every_task_deleted_returns_the_lead_one_left_does_not():
    gone = judge(ROW, Seen((task(deleted=True),)), OUTCOMES, SLA, T0 + 2 * H)
    assert gone.action == "deleted" and gone.changes["state"] == "deleted"
    one_left = judge(
        ROW, Seen((task(deleted=True), replace(task(), task_id="t2"))), OUTCOMES, SLA, T0 + 2 * H
    )
    assert one_left.action is None


def test_no_touch_by_the_due_time_is_a_breach_said_once():
    d = judge(ROW, Seen(), OUTCOMES, SLA, T0 + 8 * H)
    assert d.action == "reassign" and d.changes == {"sla": "missed"}
    assert d.reason == "no first touch within 8 business hours"
    again = judge(replace(ROW, sla="missed"), Seen(), OUTCOMES, SLA, T0 + 9 * H)
    assert again.action is None and again.changes == {}


def test_after_the_last_reassignment_the_configured_fallback_acts():
    used_up = replace(ROW, reassignments=1)
    keep = judge(used_up, Seen(), OUTCOMES, SLA, T0 + 9 * H)
    assert keep.action is None and keep.changes == {"sla": "missed"}
    recycle = judge(
        used_up, Seen(), OUTCOMES, SLA.model_copy(update={"after_max_reassignments": "recycle"}), T0 + 9 * H
    )
    assert recycle.action == "recycle" and recycle.changes["state"] == "recycled"
    notify = judge(ROW, Seen(), OUTCOMES, Sla(first_touch_within_hours=8, on_breach="notify"), T0 + 9 * H)
    assert notify.action == "notify" and notify.changes == {"sla": "missed"}


def test_no_sla_never_breaches():
    d = judge(replace(ROW, due_at=None, sla="none"), Seen(), OUTCOMES, Sla(), T0 + 100 * H)
    assert d.changes == {} and d.action is None


def test_a_handoff_that_ended_only_records_what_the_rep_did_later():
    ended = replace(ROW, state="reassigned", next_key="p#1.r1")
    d = judge(ended, Seen((task(closed=True, outcome="worked"),)), OUTCOMES, SLA, T0 + 20 * H)
    assert d.action is None and d.changes == {
        "late": "outcome 'worked' set after the lead went to another rep"
    }
    noted = judge(replace(ended, late="x"), Seen((task(outcome="worked"),)), OUTCOMES, SLA, T0 + 20 * H)
    assert noted.changes == {}
