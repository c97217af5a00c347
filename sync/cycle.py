"""Run one cycle end to end and execute its plan: the only place that writes.

Order of writes, chosen so a crash at any point followed by a rerun leaves exactly one
task per handoff: (1) people missing in the rep's CRM are created, keyed by the other
CRM's id (idempotent upsert); (2) ledger *intents* are committed; (3) tasks are written
(Salesforce: external-id upsert; HubSpot: look up intents from earlier runs by key,
create only the missing); (4) the ledger is confirmed; (5) stage, handoff and synced
fields are written on the people; (6) queue, identities, stages and watermarks are saved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from mappings.lifecycle import funnel_rank, hubspot_stage, may_move
from sync.engine import (
    CycleContext,
    Engine,
    HandoffPlan,
    PlannedHandoff,
    reasons_json,
)
from sync.profiles import Profile
from sync.records import Person, PersonCreate, PersonUpdate, TaskRequest
from sync.routing import week_start
from sync.state import LedgerEntry

log = structlog.get_logger("handoff.cycle")

STATUS_HANDED_OFF = "handed off"
STATUS_WAITING = "waiting: rep capacity"


@dataclass
class CycleResult:
    """What a cycle did (or, dry-run, would do)."""

    summary: dict[str, Any]
    plan: HandoffPlan
    exit_code: int = 0


@dataclass
class _Writes:
    """Field writes gathered per CRM record, sent as one batch per CRM."""

    values: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    clear_first: set[tuple[str, str, str]] = field(default_factory=set)

    def put(self, crm: str, person_id: str, object_type: str, values: dict[str, Any]) -> None:
        if values:
            self.values.setdefault((crm, person_id, object_type), {}).update(values)


def run_cycle(engine: Engine, now: datetime, dry_run: bool = False) -> CycleResult:
    """Run one cycle; with ``dry_run`` build and return the plan without writing."""
    ctx = engine.gather(now)
    plan, routing = engine.plan(ctx)
    engine.refresh_queued(ctx, [a.candidate.person_key for a in routing.assignments])
    for a in routing.assignments:
        key = a.candidate.person_key
        q = ctx.qualifications.get(key)
        if key in ctx.profiles and q and q.qualified and engine.episode(ctx, key)[1]:
            plan.handoffs.append(engine.planned_handoff(ctx, key, a.rep, a.why))
    if dry_run:
        return CycleResult(_summary(engine, ctx, plan, {}, dry_run=True), plan)
    return _execute(engine, ctx, plan, [d.candidate.person_key for d in routing.deferrals])


# --- execute -------------------------------------------------------------------


def _execute(engine: Engine, ctx: CycleContext, plan: HandoffPlan, deferred: Sequence[str]) -> CycleResult:
    state = engine.state
    run_id = state.start_run(ctx.now)
    counts: dict[str, Counter[str]] = {
        k: Counter() for k in ("tasks_created", "tasks_existing", "created", "updated")
    }
    failed: list[dict[str, str]] = []

    def error(crm: str, record: str, reason: str) -> None:
        failed.append({"crm": crm, "record": record, "reason": reason})
        state.record_error(run_id, crm, record, reason, ctx.now)
        log.warning("record_failed", crm=crm, record=record, reason=reason)

    _create_missing_people(engine, ctx, plan, counts, error)
    entries = _intents(engine, ctx, plan)
    planned = {(e.key, e.crm) for e in entries}
    recovered = [e for e in state.open_intents() if (e.key, e.crm) not in planned]
    state.record_intents(entries, run_id)
    maybe_written = {(e.key, e.crm) for e in recovered}
    ok_keys = _write_tasks(engine, ctx, [*entries, *recovered], maybe_written, counts, error)
    writes = _person_writes(engine, ctx, plan, ok_keys, deferred)
    _apply_writes(engine, writes, counts, error)
    _save_state(engine, ctx, plan, ok_keys, deferred)
    summary = _summary(engine, ctx, plan, counts, dry_run=False, errors=failed, run_id=run_id)
    status = "partial" if failed else "ok"
    state.finish_run(run_id, status, summary, ctx.now)
    return CycleResult(summary, plan, exit_code=1 if failed else 0)


def _create_missing_people(
    engine: Engine, ctx: CycleContext, plan: HandoffPlan, counts: dict[str, Counter[str]], error: Any
) -> None:
    """A person handed to a rep in a CRM where they do not exist yet is created there."""
    todo: dict[str, list[tuple[PlannedHandoff, PersonCreate]]] = {}
    for h in plan.handoffs:
        prof = h.profile
        if "salesforce" in h.task_crms and prof.salesforce is None and prof.hubspot:
            todo.setdefault("salesforce", []).append((h, _lead_create(engine, ctx, prof, h)))
        if "hubspot" in h.task_crms and prof.hubspot is None and prof.salesforce:
            todo.setdefault("hubspot", []).append((h, _contact_create(engine, ctx, prof, h)))
    for crm, items in todo.items():
        results = {r.key: r for r in engine.connectors[crm].create_people([c for _, c in items])}
        for h, create in items:
            res = results.get(create.external_id)
            if res is None or not res.ok or not res.crm_id:
                error(crm, f"create for {h.profile.key}", res.error if res else "no result")
                continue
            counts["created"][crm] += 1 if res.created is not False else 0
            person = Person(
                crm=crm,  # type: ignore[arg-type]
                id=res.crm_id,
                object_type=create.object_type,
                email=h.profile.email,
                values={k: None if v is None else str(v) for k, v in create.values.items()},
                modified_at=ctx.now,
                linked_id=create.external_id,
            )
            setattr(h.profile, crm, person)
            ctx.index.add(h.profile.identity())
            engine.state.save_identities([h.profile.identity()])


def _mapped_values(engine: Engine, prof: Profile, crm: str, object_type: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fm in engine.mapping.fields.fields:
        value = prof.values.get(fm.name)
        if value in (None, ""):
            continue
        if crm == "salesforce":
            name = fm.salesforce_name(object_type)
            if name:
                out[name] = fm.to_salesforce(value)
        elif fm.hubspot:
            out[fm.hubspot] = value
    return out


def _lead_create(engine: Engine, ctx: CycleContext, prof: Profile, h: PlannedHandoff) -> PersonCreate:
    conn = engine.connectors["salesforce"]
    values = _mapped_values(engine, prof, "salesforce", "lead")
    values.setdefault("LastName", prof.values.get("last_name") or prof.email or "Unknown")
    values.setdefault("Company", prof.values.get("company") or "[not provided]")
    values["OwnerId"] = ctx.owner_ids("salesforce")[h.rep.email]
    values[conn.handoff_fields["link"]] = prof.hubspot.id if prof.hubspot else None
    return PersonCreate(
        external_id=prof.hubspot.id if prof.hubspot else prof.key, object_type="lead", values=values
    )


def _contact_create(engine: Engine, ctx: CycleContext, prof: Profile, h: PlannedHandoff) -> PersonCreate:
    conn = engine.connectors["hubspot"]
    values = _mapped_values(engine, prof, "hubspot", "contact")
    values["hubspot_owner_id"] = ctx.owner_ids("hubspot")[h.rep.email]
    values[conn.handoff_fields["link"]] = prof.salesforce.id if prof.salesforce else None
    return PersonCreate(
        external_id=prof.salesforce.id if prof.salesforce else prof.key, object_type="contact", values=values
    )


def _intents(engine: Engine, ctx: CycleContext, plan: HandoffPlan) -> list[LedgerEntry]:
    entries = []
    for h in plan.handoffs:
        for crm in h.task_crms:
            person = getattr(h.profile, crm)
            if person is None:
                continue
            payload = {
                "person_id": person.id,
                "person_type": person.object_type,
                "owner_id": ctx.owner_ids(crm)[h.rep.email],
                "subject": h.brief.subject,
                "body": h.brief.body,
                "due": h.brief.due.isoformat(),
                "priority": engine.mapping.handoff.priority,
            }
            entries.append(
                LedgerEntry(
                    key=h.key,
                    crm=crm,
                    person_key=h.profile.key,
                    episode=h.episode,
                    rep_email=h.rep.email,
                    week_start=week_start(ctx.now, h.rep.timezone),
                    status="intent",
                    task_id=None,
                    score=h.qualification.score,
                    reasons=reasons_json(h.qualification.reasons),
                    planned_at=ctx.now,
                    payload=payload,
                )
            )
    return entries


def _task(entry: LedgerEntry) -> TaskRequest:
    from datetime import date

    p = entry.payload or {}
    return TaskRequest(
        key=entry.key,
        person_id=p["person_id"],
        person_type=p["person_type"],
        owner_id=p["owner_id"],
        subject=p["subject"],
        body=p["body"],
        due=date.fromisoformat(p["due"]),
        priority=p["priority"],
    )


def _write_tasks(
    engine: Engine,
    ctx: CycleContext,
    entries: Sequence[LedgerEntry],
    maybe_written: set[tuple[str, str]],
    counts: dict[str, Counter[str]],
    error: Any,
) -> set[str]:
    """Write every intent's task exactly once; returns the handoff keys now done."""
    done: set[str] = set()
    for crm, conn in engine.connectors.items():
        mine = [e for e in entries if e.crm == crm]
        if not mine:
            continue
        check = [e.key for e in mine if (e.key, e.crm) in maybe_written]
        existing = conn.find_tasks(check) if check else {}
        for key, task_id in existing.items():
            engine.state.confirm(key, crm, task_id, ctx.now)
            counts["tasks_existing"][crm] += 1
            done.add(key)
        todo = [_task(e) for e in mine if e.key not in existing]
        for res in conn.write_tasks(todo) if todo else []:
            if res.ok and res.crm_id:
                engine.state.confirm(res.key, crm, res.crm_id, ctx.now)
                counts["tasks_created" if res.created is not False else "tasks_existing"][crm] += 1
                done.add(res.key)
            else:
                engine.state.fail(res.key, crm, res.error or "rejected")
                error(crm, f"task {res.key}", res.error or "rejected")
    return done


# --- person writes -----------------------------------------------------------


def _stage_values(
    engine: Engine, crm: str, person: Person, current: str | None, target: str, writes: _Writes
) -> dict[str, Any]:
    """Values that move ``person`` to canonical ``target`` in its CRM, if allowed."""
    lc = engine.mapping.lifecycle
    spec = lc.write.get(target)
    if spec is None or not may_move(lc, current, target):
        return {}
    if crm == "hubspot":
        out: dict[str, Any] = {}
        if spec.hubspot.lifecyclestage and spec.hubspot.lifecyclestage != person.values.get("lifecyclestage"):
            out["lifecyclestage"] = spec.hubspot.lifecyclestage
            now_stage = hubspot_stage(lc, person.values.get("lifecyclestage"), None)
            if funnel_rank(lc, hubspot_stage(lc, spec.hubspot.lifecyclestage, None)) < funnel_rank(
                lc, now_stage
            ):
                writes.clear_first.add((crm, person.id, person.object_type))
        if spec.hubspot.lead_status and spec.hubspot.lead_status != person.values.get("hs_lead_status"):
            out["hs_lead_status"] = spec.hubspot.lead_status
        return out
    if person.object_type != "lead" or person.converted_to or not spec.salesforce.lead_status:
        return {}
    if person.values.get("Status") == spec.salesforce.lead_status:
        return {}
    return {"Status": spec.salesforce.lead_status}


def _handoff_values(
    engine: Engine, crm: str, status: str, reason: str, score: int, rep: str, at: datetime
) -> dict[str, Any]:
    f = engine.connectors[crm].handoff_fields
    values: dict[str, Any] = {
        f["status"]: status,
        f["reason"]: reason[:1000],
        f["score"]: score,
        f["rep"]: rep,
    }
    if "date" in f:
        values[f["date"]] = at.date().isoformat()
    return values


def _person_writes(
    engine: Engine, ctx: CycleContext, plan: HandoffPlan, done: set[str], deferred: Sequence[str]
) -> _Writes:
    writes = _Writes()
    handed = {h.profile.key for h in plan.handoffs if h.key in done}
    for prof in ctx.profiles.values():
        _sync_writes(engine, ctx, prof, writes, skip_stage=prof.key in handed)
    for h in plan.handoffs:
        if h.key not in done:
            continue
        reason = "; ".join(f"{r.rule} (+{r.points})" for r in h.qualification.reasons)
        for crm in ("hubspot", "salesforce"):
            person = getattr(h.profile, crm)
            if person is None or crm not in engine.connectors:
                continue
            own = h.profile.hubspot_stage if crm == "hubspot" else h.profile.salesforce_stage
            values = _stage_values(engine, crm, person, own, "sql", writes)
            values |= _handoff_values(
                engine,
                crm,
                STATUS_HANDED_OFF,
                f"score {h.qualification.score}: {reason}",
                h.qualification.score,
                h.rep.name,
                ctx.now,
            )
            owner = ctx.owner_ids(crm).get(h.rep.email)
            if (
                engine.mapping.handoff.set_owner
                and owner
                and not (crm == "salesforce" and person.converted_to)
            ):
                values["hubspot_owner_id" if crm == "hubspot" else "OwnerId"] = owner
            writes.put(crm, person.id, person.object_type, values)
    queued = {row["person_key"]: row for row in engine.state.queued()}
    reasons = {n.person_key: n.reason for n in plan.nurture}
    for key in deferred:
        _nurture_writes(engine, ctx, key, reasons.get(key, STATUS_WAITING), queued.get(key), writes)
    return writes


def _sync_writes(engine: Engine, ctx: CycleContext, prof: Profile, writes: _Writes, skip_stage: bool) -> None:
    """Field-sync writes, cross-links, and stage outcomes flowing between the CRMs."""
    hs, sf = prof.hubspot, prof.salesforce
    lc = engine.mapping.lifecycle
    if hs and "hubspot" in engine.connectors:
        values: dict[str, Any] = dict(prof.to_hubspot)
        link = engine.connectors["hubspot"].handoff_fields["link"]
        if sf and hs.linked_id != sf.id:
            values[link] = sf.id
        if (
            not skip_stage
            and prof.stage
            and funnel_rank(engine.mapping.lifecycle, prof.stage)
            > funnel_rank(engine.mapping.lifecycle, prof.hubspot_stage)
        ):
            values |= _stage_values(engine, "hubspot", hs, prof.hubspot_stage, prof.stage, writes)
        writes.put("hubspot", hs.id, hs.object_type, values)
    if sf and "salesforce" in engine.connectors and not sf.converted_to:
        values = {
            k: v
            for k, v in prof.to_salesforce.items()
            if not (sf.object_type == "lead" and k == "Email" and not v)
        }
        link = engine.connectors["salesforce"].handoff_fields["link"]
        if hs and sf.linked_id != hs.id:
            values[link] = hs.id
        if (
            not skip_stage
            and prof.stage
            and funnel_rank(lc, prof.stage) > funnel_rank(lc, prof.salesforce_stage)
        ):
            values |= _stage_values(engine, "salesforce", sf, prof.salesforce_stage, prof.stage, writes)
        writes.put("salesforce", sf.id, sf.object_type, values)


def _nurture_writes(
    engine: Engine, ctx: CycleContext, key: str, reason: str, queued: dict[str, Any] | None, writes: _Writes
) -> None:
    """Overflow stays in nurture, visibly: status and reason on the person (once)."""
    score = (
        ctx.qualifications[key].score if key in ctx.qualifications else int(queued["score"] if queued else 0)
    )
    status = STATUS_WAITING if reason.startswith("rep capacity") else f"waiting: {reason}"
    if queued and queued.get("status_written") == status:
        return
    prof = ctx.profiles.get(key)
    if prof is None and queued:
        snap = queued["snapshot"]
        if snap.get("hubspot_id") and "hubspot" in engine.connectors:
            writes.put(
                "hubspot",
                snap["hubspot_id"],
                "contact",
                _handoff_values(engine, "hubspot", status, reason, score, "", ctx.now),
            )
        return
    if prof is None:
        return
    for crm in ("hubspot", "salesforce"):
        person = getattr(prof, crm)
        if person is None or crm not in engine.connectors or (crm == "salesforce" and person.converted_to):
            continue
        own = prof.hubspot_stage if crm == "hubspot" else prof.salesforce_stage
        values = _stage_values(engine, crm, person, own, "mql", writes) if own == "lead" else {}
        values |= _handoff_values(engine, crm, status, f"{reason} (score {score})", score, "", ctx.now)
        writes.put(crm, person.id, person.object_type, values)


def _apply_writes(engine: Engine, writes: _Writes, counts: dict[str, Counter[str]], error: Any) -> None:
    for crm, conn in engine.connectors.items():
        clear = [
            PersonUpdate(pid, ot, {"lifecyclestage": ""}) for (c, pid, ot) in writes.clear_first if c == crm
        ]
        if clear:
            for res in conn.update_people(clear):
                if not res.ok:
                    error(crm, f"person {res.key}", res.error or "rejected")
        updates = [PersonUpdate(pid, ot, vals) for (c, pid, ot), vals in writes.values.items() if c == crm]
        for res in conn.update_people(updates) if updates else []:
            if res.ok:
                counts["updated"][crm] += 1
            else:
                error(crm, f"person {res.key}", res.error or "rejected")


# --- state -------------------------------------------------------------------


def _save_state(
    engine: Engine, ctx: CycleContext, plan: HandoffPlan, done: set[str], deferred: Sequence[str]
) -> None:
    state = engine.state
    if ctx.fresh_activities:
        ctx.new_activities = state.save_activities(ctx.fresh_activities)
    window = ctx.now - timedelta(days=engine.mapping.sales_ready.longest_window_days)
    state.prune_activities(window - timedelta(days=1))
    handed = {h.profile.key for h in plan.handoffs if h.key in done}
    state.dequeue(sorted(handed | {k for k, q in ctx.qualifications.items() if not q.qualified}))
    reasons = {n.person_key: n.reason for n in plan.nurture}
    for key in deferred:
        prof = ctx.profiles.get(key)
        if prof is None:
            continue  # untouched and still queued: nothing new to save
        q = ctx.qualifications[key]
        snap = {
            "name": prof.name,
            "values": dict(prof.values),
            "owner_email": engine._owner_email(ctx, prof),
            "hubspot_id": prof.hubspot.id if prof.hubspot else None,
            "salesforce_id": prof.salesforce.id if prof.salesforce else None,
        }
        state.enqueue(key, q.score, snap, reasons.get(key, "rep capacity"), ctx.now)
    for key in deferred:
        reason = reasons.get(key, "rep capacity")
        state.mark_status_written(
            key, STATUS_WAITING if reason.startswith("rep capacity") else f"waiting: {reason}"
        )
    state.save_identities([p.identity() for p in ctx.profiles.values()])
    state.save_field_values(
        {k: dict(p.values) for k, p in ctx.profiles.items() if p.hubspot and p.salesforce}
    )
    stages: dict[str, str] = {k: p.stage for k, p in ctx.profiles.items() if p.stage}
    stages |= {k: "sql" for k in handed}
    state.record_stages(stages, ctx.now)
    for (crm, stream), value in ctx.watermarks.items():
        state.set_watermark(crm, stream, value)


def _summary(
    engine: Engine,
    ctx: CycleContext,
    plan: HandoffPlan,
    counts: dict[str, Counter[str]],
    dry_run: bool,
    errors: list[dict[str, str]] | None = None,
    run_id: int | None = None,
) -> dict[str, Any]:
    per_rep = Counter(h.rep.email for h in plan.handoffs)
    return {
        "run_id": run_id,
        "dry_run": dry_run,
        "at": ctx.now.isoformat(),
        "people_pulled": {crm: ctx.pulled.get(crm, 0) for crm in engine.connectors},
        "activities_pulled": len(ctx.fresh_activities),
        "activities_new": ctx.new_activities,
        "profiles_scored": len(ctx.qualifications),
        "qualified": sum(1 for q in ctx.qualifications.values() if q.qualified),
        "handed_off": len(plan.handoffs),
        "handed_off_per_rep": dict(per_rep),
        "capacity_per_rep": plan.capacity,
        "unavailable_reps": plan.unavailable_reps,
        "kept_in_nurture": len(plan.nurture),
        "nurture_reasons": dict(Counter(n.reason for n in plan.nurture)),
        "tasks_created": {
            crm: counts.get("tasks_created", Counter()).get(crm, 0) for crm in engine.connectors
        },
        "tasks_already_existed": {
            crm: counts.get("tasks_existing", Counter()).get(crm, 0) for crm in engine.connectors
        },
        "people_created": {crm: counts.get("created", Counter()).get(crm, 0) for crm in engine.connectors},
        "people_updated": {crm: counts.get("updated", Counter()).get(crm, 0) for crm in engine.connectors},
        "api_calls": {crm: sum(conn.calls.values()) for crm, conn in engine.connectors.items()},
        "errors": errors or [],
        "plan": [
            {
                "person": h.profile.name,
                "person_key": h.profile.key,
                "score": h.qualification.score,
                "rep": h.rep.email,
                "why_rep": h.why,
                "task_in": list(h.task_crms),
                "reasons": reasons_json(h.qualification.reasons),
            }
            for h in plan.handoffs
        ],
        "nurture": [
            {"person": n.name, "person_key": n.person_key, "score": n.score, "reason": n.reason}
            for n in plan.nurture
        ],
    }
