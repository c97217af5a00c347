"""Follow-up: what reps did with their handoffs comes back, and missed ones move on.

Entry point: ``follow_up(engine, ctx, execute) -> FollowUpCounts``, run after ``recover``
and before ``plan`` (a reassignment takes capacity before new handoffs do). Steps:

1. every confirmed handoff gets an outcome row, its first touch due ``sla`` business
   hours after assignment in the rep's working time (``sync.calendar``; out-of-office days
   do not stop the clock, so a rep who goes away is handled by the breach rules);
2. observe, incrementally and batched: each CRM's handoff tasks changed since the last
   look (``Connector.task_changes``: one call when nothing changed) with Salesforce's
   touches by the reps; HubSpot touches for the open handoffs whose contact's "Last
   Activity Date" moved (from the mirror: no call unless it did); a stage past SQL; and,
   before any breach is acted on, the due handoffs' tasks and touches read again;
3. judge (``sync.judge``) and act: reassign or reroute (a new handoff, exactly once, then
   the old task closed with a note), back to nurture (stage and status written, offered
   again per ``handoff.yaml outcomes``), recycle, or notify; then the HubSpot contact's
   outcome properties. Writes go out before the rows are saved, and every one is
   idempotent, so a crash anywhere is finished by the next run, never doubled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from connectors.hubspot.connector import parse_time
from crm_handoff.records import Person, TaskClose, TaskState, Touch
from mappings.availability import Schedule
from mappings.lifecycle import funnel_rank
from mappings.models import Rep
from sync.calendar import deadline
from sync.context import CycleContext, PlannedHandoff, record_error
from sync.engine import Engine
from sync.evaluate import load_profiles
from sync.execute import Executor
from sync.judge import Decision, Seen, judge
from sync.notify import queue_breach
from sync.outside import add_outside_work
from sync.plan import PlanStep, available_reps, brief_for
from sync.routing import Candidate, Router, week_start
from sync.state import OutcomeRow
from sync.writes import STATUS_RETURNED, Writes, handoff_values, stage_values

log = structlog.get_logger("handoff.followup")

WATERMARK = "task_changes"
DUE_PAGE = 5000  # due handoffs read again and judged together
_CHAIN = re.compile(r"^(?P<base>.+?)(?:\.r(?P<n>\d+))?$")
_RETURNING = ("nurture", "recycle", "disqualify", "deleted")


@dataclass
class FollowUpCounts:
    """What the follow-up saw and did this cycle (in the cycle summary)."""

    opened: int = 0
    checked: int = 0
    acted: int = 0
    worked: int = 0
    rejected: int = 0
    reassigned: int = 0
    rerouted: int = 0
    recycled: int = 0
    deleted: int = 0
    breaches: int = 0
    notified: int = 0
    waiting_for_rep: int = 0
    late: int = 0

    def to_json(self) -> dict[str, int]:
        """The counts as the summary stores them."""
        return dict(self.__dict__)


@dataclass
class _Work:
    """One cycle's follow-up: the decisions, and what acting on them gathered."""

    rows: dict[str, OutcomeRow]
    decisions: dict[str, Decision]
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: Writes = field(default_factory=Writes)


def chain_key(key: str) -> tuple[str, int]:
    """(the first handoff's key, how many times it was reassigned): ``p#1.r2`` -> (``p#1``, 2)."""
    m = _CHAIN.match(key)
    assert m is not None
    return m["base"], int(m["n"] or 0)


def next_key(key: str) -> str:
    """The key of the handoff a reassignment of ``key`` makes."""
    base, n = chain_key(key)
    return f"{base}.r{n + 1}"


def follow_up(engine: Engine, ctx: CycleContext, execute: Executor) -> FollowUpCounts:
    """Read back what reps did with their handoffs and act on it (see the module)."""
    counts = FollowUpCounts()
    if ctx.dry_run:
        return counts
    counts.opened = open_rows(engine, ctx)
    marks = {crm: ctx.now for crm in engine.pull_order}
    _handle(engine, ctx, execute, _observe(engine, ctx), counts, confirmed=False)
    after: tuple[datetime, str] | None = None
    while due := engine.state.due_outcomes(ctx.now, after, DUE_PAGE):  # a page at a time: memory stays flat
        after = (due[-1].due_at or ctx.now, due[-1].key)
        seen: dict[str, Seen] = {}
        _confirm(engine, ctx, due, seen)
        _handle(engine, ctx, execute, seen, counts, confirmed=True)
        ctx.checkpoint()
    for crm, at in marks.items():
        engine.state.set_watermark(crm, WATERMARK, at.isoformat())
    counts.opened += open_rows(engine, ctx)  # the handoffs reassignments just made
    return counts


def _handle(
    engine: Engine,
    ctx: CycleContext,
    execute: Executor,
    seen: Mapping[str, Seen],
    counts: FollowUpCounts,
    confirmed: bool,
) -> None:
    """Judge and act on these handoffs; their rows are saved once the writes went out.
    Unless ``confirmed`` (read again as due), a breach is left for the due pass."""
    if not seen:
        return
    rows = engine.state.outcomes_by_keys(list(seen))
    counts.checked += len(rows)
    decisions = _decide(engine, ctx, rows, seen)
    if not confirmed:
        decisions = {k: d for k, d in decisions.items() if not _breach_only(rows[k], d)}
    work = _Work(rows, decisions)
    _act(engine, ctx, execute, work, counts)
    execute.people(work.writes)
    engine.state.save_outcomes(work.changes, ctx.now)


def _breach_only(row: OutcomeRow, d: Decision) -> bool:
    """A decision that is a breach and nothing else (it needs the due pass's fresh reads)."""
    return row.sla == "open" and d.changes.get("sla") == "missed" and "first_touch_at" not in d.changes


# --- 1. outcome rows -------------------------------------------------------------


def open_rows(engine: Engine, ctx: CycleContext) -> int:
    """An outcome row for every confirmed handoff without one; returns how many."""
    reps = {r.email: r for r in engine.mapping.reps.reps}
    hours = engine.mapping.handoff.sla.first_touch_within_hours
    opened = 0
    while batch := engine.state.handoffs_without_outcome():
        rows = []
        for key, person_key, rep_email, assigned in batch:
            due = _due(engine, reps.get(rep_email), assigned, hours)
            rows.append(
                OutcomeRow(
                    key=key,
                    person_key=person_key,
                    rep_email=rep_email,
                    assigned_at=assigned,
                    due_at=due,
                    state="open",
                    sla="open" if due else "none",
                    reassignments=chain_key(key)[1],
                )
            )
        engine.state.open_outcomes(rows, ctx.now)
        opened += len(rows)
    return opened


def _due(engine: Engine, rep: Rep | None, assigned: datetime, hours: float | None) -> datetime | None:
    if hours is None or rep is None:
        return None
    return first_touch_due(engine.mapping.reps.schedule_for(rep), assigned, hours)


def first_touch_due(schedule: Schedule, assigned: datetime, hours: float) -> datetime | None:
    """When the first touch is due: ``hours`` of the rep's working time after assignment.
    Holidays stop the clock; out-of-office days do not (a rep who goes away misses the SLA
    and the breach rules move the lead on). None when the schedule has no working time."""
    try:
        return deadline(replace(schedule, out_of_office=()), assigned, hours)
    except ValueError:
        return None


# --- 2. observe ------------------------------------------------------------------


def _observe(engine: Engine, ctx: CycleContext) -> dict[str, Seen]:
    """Task changes and touches since the last look, by handoff key."""
    state = engine.state
    oldest = state.oldest_open_outcome()
    if oldest is None:
        return {}
    tasks: dict[str, list[TaskState]] = {}
    touches: list[Touch] = []
    since: dict[str, datetime] = {}
    for crm in engine.pull_order:  # a job that pulls one CRM looks at that CRM's tasks only
        conn = engine.connectors[crm]
        mark = state.watermark(crm, WATERMARK)
        since[crm] = (datetime.fromisoformat(mark) if mark else oldest) - engine.lookback
        changes = conn.task_changes(since[crm], sorted(ctx.owner_ids(crm).values()))
        for t in changes.tasks:
            if t.key:
                tasks.setdefault(t.key, []).append(t)
        touches += changes.touches
    for crm, at in since.items():
        wanted = working_statuses(engine, crm)
        changed = _changed(engine, crm, at) if wanted or crm == "hubspot" else []
        touches += _status_moves(crm, changed, wanted)
        if crm == "hubspot":
            touches += _hubspot_touches(engine, changed)
    return _seen(engine, ctx, tasks, touches)


def _changed(engine: Engine, crm: str, since: datetime) -> list[tuple[OutcomeRow, Person]]:
    """Open, untouched handoffs whose person's ``crm`` record changed since ``since``, with
    that record as the mirror holds it (read once for every check that looks at it)."""
    changed = engine.state.untouched_changed(crm, since)
    if not changed:
        return []
    people = {p.id: p for p in engine.state.people_by_ids(crm, [i for _, i in changed])}
    return [(row, people[i]) for row, i in changed if i in people]


#: Where a person's lead status is, per CRM (a Salesforce contact has none).
STATUS_FIELD = {"hubspot": "hs_lead_status", "salesforce": "Status"}


def working_statuses(engine: Engine, crm: str) -> set[str]:
    """Lead statuses that mean a rep is working the lead: those the funnel maps to SQL or
    later, except the one crm-handoff itself writes on a handoff (``lifecycle.yaml``)."""
    lc = engine.mapping.lifecycle
    out: set[str] = set()
    for stage in lc.funnel[lc.funnel.index("sql") :] if "sql" in lc.funnel else ():
        match = lc.stages.get(stage)
        if match is not None:
            out |= set(getattr(match, crm).lead_status)
    written = lc.write.get("sql")
    if written is not None:
        out.discard(getattr(written, crm).lead_status or "")
    return out


def _status_moves(crm: str, changed: Sequence[tuple[OutcomeRow, Person]], wanted: set[str]) -> list[Touch]:
    """Of these changed records, those the rep moved to a working lead status (``wanted``)
    after the handoff (from the mirror: no call); the record's change time is the touch."""
    out: list[Touch] = []
    for row, person in changed:
        if person.values.get(STATUS_FIELD[crm]) in wanted and person.modified_at >= row.assigned_at:
            at = person.modified_at
            out.append(
                Touch(person.crm, f"status:{person.id}", person.id, "lead status", person.owner_id, at)
            )
    return out


def _hubspot_touches(engine: Engine, changed: Sequence[tuple[OutcomeRow, Person]]) -> list[Touch]:
    """Touches on the contacts of these changed records whose Last Activity Date moved after
    the handoff (the mirror says; a batched read only for those)."""
    wanted: dict[str, datetime] = {}
    for row, person in changed:
        stamp = _time(person.values.get("notes_last_updated"))
        if stamp is not None and stamp >= row.assigned_at:
            wanted[person.id] = min(wanted.get(person.id, row.assigned_at), row.assigned_at)
    if not wanted:
        return []
    return list(engine.connectors["hubspot"].touches(sorted(wanted), min(wanted.values())))


def _time(value: Any) -> datetime | None:
    """A HubSpot datetime property (``parse_time``), None when it is not one."""
    try:
        return parse_time(value)
    except ValueError:
        return None


def _confirm(engine: Engine, ctx: CycleContext, due: Sequence[OutcomeRow], seen: dict[str, Seen]) -> None:
    """Before a breach is acted on, the due handoffs' tasks and touches are read again."""
    if not due:
        return
    keys = [r.key for r in due]
    by_crm: dict[str, dict[str, str]] = {}
    for key, held in engine.state.ledger_tasks(keys).items():
        for crm, task_id in held:
            by_crm.setdefault(crm, {})[task_id] = key
    tasks: dict[str, list[TaskState]] = {}
    for crm, ids in by_crm.items():
        if crm in engine.connectors:
            for t in engine.connectors[crm].read_tasks(sorted(ids)):
                tasks.setdefault(ids[t.task_id], []).append(t)
    touches: list[Touch] = []
    idents = engine.state.identities_by_key(sorted({r.person_key for r in due}))
    since = min(r.assigned_at for r in due)
    for crm in engine.connectors:
        records = [str(getattr(i, f"{crm}_id")) for i in idents if getattr(i, f"{crm}_id")]
        if records:
            touches += list(engine.connectors[crm].touches(records, since))
    seen.update(_seen(engine, ctx, tasks, touches, keys))


def _seen(
    engine: Engine,
    ctx: CycleContext,
    tasks: Mapping[str, list[TaskState]],
    touches: Sequence[Touch],
    also: Sequence[str] = (),
) -> dict[str, Seen]:
    """Observations by handoff key: its tasks and the earliest touch by its rep."""
    state = engine.state
    sf = [t.person_id for t in touches if t.crm == "salesforce"]
    hs = [t.person_id for t in touches if t.crm == "hubspot"]
    person_of: dict[tuple[str, str], str] = {}
    for ident in state.identities_for(hs, sf, []):
        if ident.hubspot_id:
            person_of[("hubspot", ident.hubspot_id)] = ident.person_key
        if ident.salesforce_id:
            person_of[("salesforce", ident.salesforce_id)] = ident.person_key
    rows = state.outcomes_for_people(sorted(set(person_of.values())), only_open=True)
    rows += list(state.outcomes_by_keys([*tasks, *also]).values())
    earliest: dict[str, tuple[datetime, str]] = {}
    for row in {r.key: r for r in rows}.values():
        for t in touches:
            owner = ctx.owner_ids(t.crm).get(row.rep_email)
            mine = person_of.get((t.crm, t.person_id)) == row.person_key and t.owner_id == owner
            first = row.key not in earliest or t.occurred_at < earliest[row.key][0]
            if mine and t.occurred_at >= row.assigned_at and first:
                earliest[row.key] = (t.occurred_at, t.kind)
    _moved_on(engine, [r for r in {r.key: r for r in rows}.values() if r.first_touch_at is None], earliest)
    keys = set(tasks) | set(earliest) | set(also)
    return {k: Seen(tuple(tasks.get(k, ())), earliest.get(k)) for k in keys}


def _moved_on(engine: Engine, rows: Sequence[OutcomeRow], earliest: dict[str, tuple[datetime, str]]) -> None:
    """A lead moved past SQL after the handoff (an opportunity, a customer) was acted on."""
    lc = engine.mapping.lifecycle
    later = [s for s in lc.funnel if funnel_rank(lc, s) > funnel_rank(lc, "sql")]
    if not rows or not later:
        return
    entries = engine.state.stage_entries_of([r.person_key for r in rows], later)
    for row in rows:
        for stage, at in entries.get(row.person_key, []):
            if at >= row.assigned_at and (row.key not in earliest or at < earliest[row.key][0]):
                earliest[row.key] = (at, f"moved to {stage}")


# --- 3. judge and act ------------------------------------------------------------


def _decide(
    engine: Engine, ctx: CycleContext, rows: Mapping[str, OutcomeRow], seen: Mapping[str, Seen]
) -> dict[str, Decision]:
    """Each row's decision; one whose reassignment a crashed run began goes on with it."""
    handoff = engine.mapping.handoff
    begun = engine.state.ledger_has([next_key(k) for k, r in rows.items() if r.is_open])
    out: dict[str, Decision] = {}
    for key, row in rows.items():
        if row.is_open and next_key(key) in begun:
            out[key] = Decision(
                {"sla": "missed" if row.sla == "open" else row.sla}, "reassign", row.reason or ""
            )
            continue
        d = judge(row, seen.get(key, Seen()), handoff.outcomes, handoff.sla, ctx.now)
        if d.error:
            crm = next((t.task_id for t in seen[key].tasks if t.outcome), key)
            record_error(engine.state, ctx, "handoff", f"task {crm} ({key})", d.error)
            continue
        out[key] = d
    return out


def _act(engine: Engine, ctx: CycleContext, execute: Executor, work: _Work, counts: FollowUpCounts) -> None:
    """Carry out the decisions: handoffs moved on, leads returned, outcome properties."""
    moving: list[tuple[OutcomeRow, Decision]] = []
    for key, d in work.decisions.items():
        row = work.rows[key]
        _count(row, d, counts)
        if d.action in ("reassign", "reroute"):
            moving.append((row, d))
            continue
        if d.action == "notify":
            log.warning("sla_breached", handoff=key, rep=row.rep_email, due=str(row.due_at), reason=d.reason)
            counts.notified += 1
            queue_breach(engine, ctx, row, d.reason)  # sent at the end of the cycle (sync.notify)
        if d.changes:
            work.changes[key] = d.changes
        if d.action in _RETURNING:
            _return_to_nurture(engine, ctx, replace(row, **d.changes), d, work.writes)
        elif d.changes:
            _outcome_values(engine, ctx, replace(row, **d.changes), work.writes)
    if moving:
        _move_on(engine, ctx, execute, moving, work, counts)


def _count(row: OutcomeRow, d: Decision, counts: FollowUpCounts) -> None:
    state = d.changes.get("state")
    counts.acted += 1 if "first_touch_at" in d.changes else 0
    counts.worked += 1 if state == "worked" else 0
    counts.rejected += 1 if state in ("rejected", "rerouted") else 0
    counts.recycled += 1 if state == "recycled" else 0
    counts.deleted += 1 if state == "deleted" else 0
    counts.breaches += 1 if d.changes.get("sla") == "missed" and row.sla == "open" else 0
    counts.late += 1 if "late" in d.changes else 0


def _return_to_nurture(
    engine: Engine, ctx: CycleContext, row: OutcomeRow, d: Decision, writes: Writes
) -> None:
    """The lead goes back to nurture (or is disqualified) in both CRMs, with the reason."""
    load_profiles(engine, ctx, [row.person_key])
    prof = ctx.profiles.get(row.person_key)
    if prof is None:
        return
    target = "disqualified" if d.action == "disqualify" else "nurture"
    why = f"{d.reason} (decided {ctx.now:%Y-%m-%d})"
    for person, own in ((prof.hubspot, prof.hubspot_stage), (prof.salesforce, prof.salesforce_stage)):
        if person is None or person.crm not in engine.connectors or person.converted_to:
            continue
        conn = engine.connectors[person.crm]
        score = ctx.qualifications[row.person_key].score if row.person_key in ctx.qualifications else 0
        values = stage_values(engine.mapping, person.crm, person, own, target, writes)
        values |= handoff_values(conn, STATUS_RETURNED, why, score, "", ctx.now)
        writes.put(person.crm, person.id, person.object_type, values)
    _outcome_values(engine, ctx, row, writes)
    ctx.forget([row.person_key])


def _outcome_values(engine: Engine, ctx: CycleContext, row: OutcomeRow, writes: Writes) -> None:
    """The HubSpot contact's outcome properties, from the person's latest handoff."""
    conn = engine.connectors.get("hubspot")
    if conn is None or "outcome" not in conn.handoff_fields:
        return
    ident = next(iter(engine.state.identities_by_key([row.person_key])), None)
    if ident is None or not ident.hubspot_id:
        return
    f = conn.handoff_fields
    values = {
        f["outcome"]: row.state,
        f["outcome_reason"]: (row.reason or "")[:1000],
        f["sla"]: row.sla,
        f["reassigned"]: row.reassignments + (1 if row.state == "reassigned" else 0),
        f["first_touch"]: row.first_touch_at.isoformat() if row.first_touch_at else "",
        f["outcome_date"]: row.decided_at.date().isoformat() if row.decided_at else "",
    }
    writes.put("hubspot", ident.hubspot_id, "contact", values)


# --- reassign and reroute ----------------------------------------------------------


def _move_on(
    engine: Engine,
    ctx: CycleContext,
    execute: Executor,
    moving: Sequence[tuple[OutcomeRow, Decision]],
    work: _Work,
    counts: FollowUpCounts,
) -> None:
    """New handoffs for breached or rerouted ones (exactly once: a key per reassignment,
    the ledger's intent first), then the old tasks closed with a note."""
    begun = engine.state.ledger_has([next_key(r.key) for r, _ in moving])
    reps = {r.email: r for r in engine.mapping.reps.reps}
    router = _router(engine, ctx)
    load_profiles(engine, ctx, sorted({r.person_key for r, _ in moving}))
    planned: list[PlannedHandoff] = []
    to: dict[str, Rep] = {}
    for row, d in moving:
        new = next_key(row.key)
        rep = reps.get(begun[new]) if new in begun else _pick(engine, ctx, router, row)
        if rep is None:
            counts.waiting_for_rep += 1
            if d.action == "reroute":  # decided by the rep: recorded, and offered again later
                work.changes[row.key] = d.changes | {
                    "state": "open",
                    "reason": f"{d.reason}: no other eligible rep",
                }
            log.info("reassign_waiting", handoff=row.key, reason="no other eligible rep with capacity")
            continue
        to[row.key] = rep
        if new not in begun and (h := _handoff(engine, ctx, row, d, new, rep)) is not None:
            planned.append(h)
    if planned:
        execute.handoffs(PlanStep(handoffs=planned), last=True)
    made = engine.state.ledger_tasks([next_key(k) for k in to])
    _close_old(engine, ctx, execute, {k: rep for k, rep in to.items() if next_key(k) in made}, work, counts)


def _router(engine: Engine, ctx: CycleContext) -> Router:
    reps, _ = available_reps(engine, ctx)
    weeks = {r.email: week_start(ctx.now, r.timezone) for r in engine.mapping.reps.reps}
    used = engine.state.used_capacity(weeks)
    used = add_outside_work(used, engine.mapping.reps, engine.connectors, ctx.owner_ids)
    return Router(reps, used, engine.mapping.reps.pools)


def _pick(engine: Engine, ctx: CycleContext, router: Router, row: OutcomeRow) -> Rep | None:
    """The next eligible rep with capacity, never one this lead was already with."""
    base, n = chain_key(row.key)
    chain = [base, *(f"{base}.r{i}" for i in range(1, n + 1))]
    before = {r.rep_email for r in engine.state.outcomes_by_keys(chain).values()} | {row.rep_email}
    prof = ctx.profiles.get(row.person_key)
    values = dict(prof.values) if prof else {}
    score = ctx.qualifications[row.person_key].score if row.person_key in ctx.qualifications else 0
    pick = router.route_one(Candidate(row.person_key, score, values, None, row.assigned_at), exclude=before)
    return pick.rep if pick else None


def _handoff(
    engine: Engine, ctx: CycleContext, row: OutcomeRow, d: Decision, key: str, rep: Rep
) -> PlannedHandoff | None:
    """The new handoff: the same person and episode, a brief that carries the history."""
    prof, q = ctx.profiles.get(row.person_key), ctx.qualifications.get(row.person_key)
    if prof is None or q is None:
        return None
    reps = {r.email: r for r in engine.mapping.reps.reps}
    before = reps[row.rep_email].name if row.rep_email in reps else row.rep_email
    brief = brief_for(engine, ctx, row.person_key, rep)
    history = (
        f"Reassigned to you from {before} ({d.reason}); first handed off "
        f"{row.assigned_at:%Y-%m-%d %H:%M} UTC. Earlier reassignments: {row.reassignments}.\n\n"
    )
    episode = int(chain_key(row.key)[0].rsplit("#", 1)[-1] or 1)
    why = "rerouted by the rep" if d.action == "reroute" else "reassigned: SLA missed"
    return PlannedHandoff(
        key, episode, prof, rep, why, q, replace(brief, body=history + brief.body), engine.task_crms(rep)
    )


def _close_old(
    engine: Engine,
    ctx: CycleContext,
    execute: Executor,
    moved: Mapping[str, Rep],
    work: _Work,
    counts: FollowUpCounts,
) -> None:
    """The old handoffs' tasks closed as reassigned with a note, then their rows ended."""
    tasks = engine.state.ledger_tasks(list(moved))
    closes: dict[str, list[TaskClose]] = {}
    for key, rep in moved.items():
        d = work.decisions[key]
        note = f"Reassigned to {rep.name} by crm-handoff: {d.reason}."
        for crm, task_id in tasks.get(key, []):
            closes.setdefault(crm, []).append(TaskClose(task_id, note))
    execute.close_tasks(closes)
    for key, rep in moved.items():
        d, row = work.decisions[key], work.rows[key]
        state = "rerouted" if d.action == "reroute" else "reassigned"
        changes = d.changes | {
            "state": state,
            "next_key": next_key(key),
            "decided_at": ctx.now,
            "reason": f"{d.reason}; now with {rep.name}",
        }
        work.changes[key] = changes
        counts.reassigned += 1 if state == "reassigned" else 0
        counts.rerouted += 1 if state == "rerouted" else 0
        _outcome_values(engine, ctx, replace(row, **changes), work.writes)
