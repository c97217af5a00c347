"""What a handoff's observations mean: worked, rejected, missed, or nothing yet (pure).

Entry point: ``judge(row, seen, outcomes, sla, now) -> Decision``. ``row`` is the handoff's
outcome as the state holds it, ``seen`` what the CRMs say now (its tasks, the earliest
first touch found). The decision says which columns change and which action follows
(``sync.followup`` carries it out). Rules, in order:

1. a handoff already ended (reassigned, rejected, ...) only records what the rep did
   afterwards (``late``); the lead stays where it went;
2. an outcome the rep picked on the task decides (``handoff.yaml outcomes``); a value the
   mapping does not list is an error on the task, and nothing is decided;
3. a task completed without an outcome is worked; a task deleted by hand (every task of
   the handoff gone) returns the lead to nurture, offered again on new behaviour;
4. a first touch (a call, email or meeting by the rep, or the lead moved past SQL) makes
   it acted on, within the SLA when it came by the due time;
5. no touch by the due time is a breach: ``sla.on_breach`` (reassign at most
   ``max_reassignments`` times, then ``after_max_reassignments``), said once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm_handoff.records import TaskState
from mappings.outcomes import Outcomes, Sla
from sync.state.outcomes import OutcomeRow

#: What ``sync.followup`` does after a decision.
ACTIONS = ("reassign", "reroute", "nurture", "recycle", "disqualify", "notify", "deleted")


@dataclass(frozen=True)
class Seen:
    """What the CRMs say about one handoff now."""

    tasks: tuple[TaskState, ...] = ()
    touch: tuple[datetime, str] | None = None  # the earliest first touch found: (when, kind)


@dataclass
class Decision:
    """The columns of the outcome row that change, and the action that follows (if any)."""

    changes: dict[str, Any] = field(default_factory=dict)
    action: str | None = None
    reason: str = ""
    error: str | None = None  # bad CRM data on the task: recorded, nothing decided


def _first(values: list[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def judge(row: OutcomeRow, seen: Seen, outcomes: Outcomes, sla: Sla, now: datetime) -> Decision:
    """Decide what the observations mean for this handoff (see the module)."""
    picked = next((t.outcome for t in seen.tasks if t.outcome), None)
    if not row.is_open:
        return _late(row, seen, picked)
    if picked is not None:
        return _picked(row, seen, picked, outcomes, now)
    d = Decision()
    closed = [t for t in seen.tasks if t.closed and not t.deleted]
    if closed:
        done_at = _first([t.completed_at for t in closed]) or now
        _touched(row, seen, d, fallback=(done_at, "task completed"))
        d.changes |= {"state": "worked", "completed_at": done_at, "decided_at": now}
        return d
    if seen.tasks and all(t.deleted for t in seen.tasks):
        d.changes |= {"state": "deleted", "reason": "task deleted in the CRM", "decided_at": now}
        d.action, d.reason = "deleted", "task deleted in the CRM"
        return d
    _touched(row, seen, d)
    if row.first_touch_at is None and "first_touch_at" not in d.changes:
        _breach(row, sla, now, d)
    elif row.state == "open":
        d.changes["state"] = "acted"
    return d


def _picked(row: OutcomeRow, seen: Seen, picked: str, outcomes: Outcomes, now: datetime) -> Decision:
    """The rep picked an outcome on the task: it decides (``handoff.yaml outcomes``)."""
    d = Decision()
    choice = outcomes.by_value().get(picked)
    if choice is None:
        listed = ", ".join(c.value for c in outcomes.choices) or "none"
        d.error = f"outcome {picked!r} is not one of handoff.yaml outcomes ({listed})"
        return d
    _touched(row, seen, d, rejecting=choice.rejects)
    marked = [t.modified_at for t in seen.tasks if t.outcome == picked and t.modified_at]
    decided = min(max(marked), now) if marked else now  # when the rep picked it, as the CRM says
    d.changes |= {"outcome": picked, "reason": choice.display, "decided_at": decided}
    if not choice.rejects:
        d.changes["state"] = "worked"
        d.changes["completed_at"] = _first([t.completed_at for t in seen.tasks]) or now
        return d
    d.changes["state"] = "rerouted" if choice.action == "reroute" else "rejected"
    hours = outcomes.give_back_if_rejected_within_hours
    d.changes["gave_back"] = hours is not None and (decided - row.assigned_at).total_seconds() <= hours * 3600
    d.action, d.reason = choice.action, choice.display
    return d


def _touched(
    row: OutcomeRow,
    seen: Seen,
    d: Decision,
    fallback: tuple[datetime, str] | None = None,
    rejecting: bool = False,
) -> None:
    """Record the first touch (and whether it met the SLA), if this is the first seen."""
    if row.first_touch_at is not None or rejecting:
        return
    touch = seen.touch or fallback
    if touch is None:
        return
    at, kind = touch
    d.changes |= {"first_touch_at": at, "first_touch_kind": kind}
    if row.sla == "open":
        d.changes["sla"] = "met" if row.due_at is None or at <= row.due_at else "missed"


def _breach(row: OutcomeRow, sla: Sla, now: datetime, d: Decision) -> None:
    """No touch yet: past the due time, the SLA is missed and ``on_breach`` acts (once)."""
    if row.sla != "open" or row.due_at is None or now < row.due_at:
        return
    d.changes["sla"] = "missed"
    hours = f"{sla.first_touch_within_hours:g}" if sla.first_touch_within_hours else "the"
    d.reason = f"no first touch within {hours} business hours"
    action = sla.on_breach
    if action == "reassign" and row.reassignments >= sla.max_reassignments:
        action = None if sla.after_max_reassignments == "keep" else sla.after_max_reassignments
        d.reason += f" (reassigned {row.reassignments} times already)"
    d.action = action
    if action == "recycle":
        d.changes |= {"state": "recycled", "reason": d.reason, "decided_at": now}


def _late(row: OutcomeRow, seen: Seen, picked: str | None) -> Decision:
    """A change on the task of a handoff that has ended: noted, never acted on."""
    d = Decision()
    if row.state not in ("reassigned", "rerouted") or row.late:
        return d
    if picked is not None:
        d.changes["late"] = f"outcome {picked!r} set after the lead went to another rep"
    elif seen.touch is not None:
        d.changes["late"] = (
            f"{seen.touch[1]} on {seen.touch[0]:%Y-%m-%d %H:%M} UTC, after the lead went to another rep"
        )
    return d
