"""Run one cycle end to end; the execute half is the only place that writes.

Order of handoff writes, chosen so a crash at any point followed by a rerun leaves
exactly one task per handoff: (1) people missing in the rep's CRM are created, keyed
by the other CRM's id (idempotent upsert); (2) ledger *intents* are committed; (3)
tasks are written (Salesforce: external-id upsert; HubSpot: intents from earlier runs
are looked up by key, only missing tasks are created); (4) the ledger is confirmed;
(5) stage and handoff fields are written on the people; (6) the queue is updated.

A CRM whose daily API budget runs out (``QuotaExhausted``) stops the cycle cleanly:
pull checkpoints and ledger intents are saved, so the next run continues from there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import structlog
from more_itertools import chunked

from connectors.base import Connector
from crm_handoff.errors import CrmError, QuotaExhausted, StopRequested
from crm_handoff.records import Activity, Person, PersonCreate, PersonUpdate, TaskRequest, WriteResult
from mappings.lifecycle import funnel_rank, hubspot_stage, may_move
from sync.engine import (
    CHUNK,
    KEEP_PROFILES,
    PLAN_BATCH,
    CycleContext,
    Engine,
    HandoffPlan,
    PlannedHandoff,
    reasons_json,
)
from sync.preflight import check_before_writes
from sync.profiles import Profile
from sync.qualify import Qualification
from sync.routing import Assignment, week_start
from sync.setaside import is_set_aside
from sync.state import LedgerEntry

log = structlog.get_logger("handoff.cycle")

STATUS_HANDED_OFF = "handed off"
STATUS_WAITING = "waiting: rep capacity"
STATUS_NO_REP = "waiting: no eligible rep"
STATUS_SET_ASIDE = "set aside"
STATUS_LAPSED = "no longer sales-ready"


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


def run_cycle(
    engine: Engine, now: datetime, dry_run: bool = False, should_stop: Callable[[], str | None] | None = None
) -> CycleResult:
    """Run one cycle; with ``dry_run`` build and return the plan without writing.

    ``should_stop`` is asked between chunks and before the handoff writes; a reason it
    returns (a SIGTERM, a lost lease) ends the cycle there, checkpointed, as 'stopped'.
    """
    ctx = CycleContext(now=now, dry_run=dry_run, should_stop=should_stop)
    plan = HandoffPlan()
    try:
        check_before_writes(  # a ConfigError here ends the run before anything is written
            engine.mapping, engine.state, engine.connectors, engine.config_path, now, remember=not dry_run
        )
        if not dry_run:
            ctx.run_id = engine.state.start_run(now)
        log.info("cycle_started", run=ctx.run_id, dry_run=dry_run)
        engine.load_owners(ctx)
        engine.open_pulls(ctx)  # people pages are fetched while activity is pulled
        try:
            _pull_and_process(engine, ctx)
        finally:
            engine.close_pulls(ctx)
        for touched in chunked(engine.touched_people(ctx), CHUNK):
            _process(engine, ctx, touched, fresh=False)
        _refresh_lapsed(engine, ctx)
        ctx.checkpoint()
        if not dry_run:
            _recover_intents(engine, ctx)  # before routing: those people are handed off, not queued
        plan, routing = engine.plan(ctx)
        batches = list(chunked(routing.assignments, PLAN_BATCH))  # memory stays flat however many
        pending = _Pending()
        for i, batch in enumerate(batches):
            if not dry_run and ctx.should_stop and ctx.should_stop():
                _execute(engine, ctx, [], pending, last=True)  # the waiting part-page first
            ctx.checkpoint()  # every planned task so far is written and confirmed: a safe point
            handoffs = _plan_handoffs(engine, ctx, batch)
            if not dry_run:
                _execute(engine, ctx, handoffs, pending, last=i + 1 == len(batches))
            plan.handoffs += [h.summary() for h in handoffs]
            engine.forget(ctx, [a.candidate.person_key for a in batch])
        if not dry_run:
            _nurture(engine, ctx, plan, [d.candidate.person_key for d in routing.deferrals])
    except (QuotaExhausted, StopRequested) as exc:
        ctx.stopped = str(exc)
        log.warning("cycle_stopped", reason=ctx.stopped)
    summary = _summary(engine, ctx, plan)
    status = "stopped" if ctx.stopped else ("partial" if ctx.errors else "ok")
    if ctx.run_id is not None:
        engine.state.finish_run(ctx.run_id, status, summary, ctx.now)
    log.info("cycle_finished", run=ctx.run_id, status=status, handed_off=summary["handed_off"])
    return CycleResult(summary, plan, exit_code=1 if (ctx.errors or ctx.stopped) else 0)


def _pull_and_process(engine: Engine, ctx: CycleContext) -> None:
    """Activity first, then people chunk by chunk, CRM by CRM (``Engine.order``).

    HubSpot's activity pull (hundreds of rate-limited calls on a first sync) runs on a
    thread while the CRMs before it are pulled and processed; it is saved before the
    first HubSpot chunk, and the people processed meanwhile who have new activity in it
    are scored again.
    """
    order = engine.order
    late = {crm: engine.start_activities(ctx, crm) for crm in order[1:] if crm == "hubspot"}
    ctx.activities_pending |= set(late)
    for crm in order:
        if crm not in late:
            engine.finish_activities(ctx, engine.start_activities(ctx, crm, background=False))

    def before_pass(crm: str) -> None:
        if crm in late:
            engine.finish_activities(ctx, late.pop(crm))
            for again in engine.early_touched(ctx):
                _process(engine, ctx, again, fresh=False)

    def on_chunk(people: list[Person], fresh: bool) -> None:
        for pull in late.values():
            engine.keep_fetched(ctx, pull)
        _process(engine, ctx, people, fresh)

    engine.pull_people(ctx, on_chunk, lambda crm, alive: _reconcile(engine, ctx, crm, alive), before_pass)


def run_cycle_or_fail(engine: Engine, now: datetime, dry_run: bool = False) -> CycleResult:
    """``run_cycle``; a CRM failure that ends the cycle is recorded on the run, then raised."""
    try:
        return run_cycle(engine, now, dry_run)
    except CrmError as exc:
        runs = engine.state.recent_runs(1) if not dry_run else []
        if runs and runs[0]["status"] == "running":
            engine.state.finish_run(runs[0]["id"], "failed", {"error": str(exc)}, now)
        raise


def _error(engine: Engine, ctx: CycleContext, crm: str, record: str, reason: str) -> None:
    ctx.errors.append({"crm": crm, "record": record, "reason": reason})
    if not ctx.dry_run:
        engine.state.record_error(ctx.run_id, crm, record, reason, ctx.now)
    log.warning("record_failed", crm=crm, record=record, reason=reason)


# --- gather: one chunk of people -------------------------------------------------


def _process(engine: Engine, ctx: CycleContext, people: list[Person], fresh: bool) -> None:
    """Merge, score and sync one chunk; queue its sales-ready people; save it.

    ``fresh``: the chunk was just pulled (its activity is read and it enters the mirror);
    else its people come from the mirror, evaluated again (touched, lapsed).
    """
    state = engine.state
    live = [p for p in people if not p.deleted]
    found = _chunk_activities(engine, ctx, live) if fresh else []  # CRM calls before the transaction
    with state.batch(lazy_sync=True):  # made durable by the chunk's checkpoint
        if fresh and not ctx.dry_run:
            _apply_merges(engine, ctx, people)
        for acts in found:
            engine._keep_activities(ctx, acts)
        profiles = engine.profiles_for(ctx, live)
        ctx.scored += len(profiles)
        writes = _Writes()
        _queue_chunk(engine, ctx, profiles, writes)
    if not ctx.dry_run:
        _save_chunk(engine, ctx, live if fresh else [], profiles, writes)


def _chunk_activities(engine: Engine, ctx: CycleContext, live: Sequence[Person]) -> list[list[Activity]]:
    """The chunk's own activity (meetings, calls...), read from each CRM."""
    window = ctx.now - timedelta(days=engine.window_days)
    found = []
    for crm, conn in engine.connectors.items():
        mine = [p for p in live if p.crm == crm]
        if mine:
            found.append(list(conn.activities_for(mine, window)))
    return found


def _apply_merges(engine: Engine, ctx: CycleContext, people: Sequence[Person]) -> None:
    """HubSpot merges move identities to the primary record; deleted records leave."""
    for p in people:
        merged = [m for m in (p.values.get("hs_merged_object_ids") or "").split(";") if m]
        if p.crm == "hubspot" and merged and not p.deleted:
            engine.state.merge_hubspot_ids(p.id, merged)
    _forget_deleted(engine, ctx, [p for p in people if p.deleted])


def _queue_chunk(engine: Engine, ctx: CycleContext, profiles: Mapping[str, Profile], writes: _Writes) -> None:
    """Field-sync writes for every profile; the sales-ready (or set-aside) ones queued, the others out."""
    drop: list[str] = []
    lapsed: list[tuple[Profile, Qualification]] = []
    for key, prof in profiles.items():
        _sync_writes(engine, prof, writes)
        q = ctx.qualifications[key]
        blocked = engine.blocked(q)
        if (q.qualified or blocked) and engine.episode(ctx, prof)[1]:
            if q.qualified:
                ctx.qualified.add(key)
            engine.enqueue(ctx, prof, q, blocked)
            if len(ctx.profiles) < KEEP_PROFILES:
                ctx.profiles[key] = prof
                continue
        else:
            drop.append(key)
            ctx.qualified.discard(key)
            if not q.qualified:
                lapsed.append((prof, q))
        engine.forget(ctx, [key])
    engine.flush_queue(ctx)
    _left_queue(engine, ctx, lapsed, writes)
    engine.dequeue(ctx, drop)


def _save_chunk(
    engine: Engine,
    ctx: CycleContext,
    pulled: Sequence[Person],
    profiles: Mapping[str, Profile],
    writes: _Writes,
) -> None:
    """The chunk's writes sent, then it and what was written saved in one transaction."""
    state = engine.state
    known: dict[tuple[str, str], Person] = {
        (q.crm, q.id): q for prof in profiles.values() for q in (prof.hubspot, prof.salesforce) if q
    }
    written = _apply_writes(engine, ctx, writes, mirror=False)
    with state.batch(lazy_sync=True):
        # the chunk enters the mirror only with its writes done: until then a re-pull of it is
        # decided again, never skipped as an echo
        state.save_people(list(pulled))
        for crm, values in written.items():
            _mirror_writes(engine, crm, values, known)  # the chunk and its counterparts, in memory
        state.save_identities([p.identity() for p in profiles.values()])
        state.save_field_values(
            {k: dict(p.values) for k, p in profiles.items() if p.hubspot and p.salesforce}
        )
        stages = {k: p.stage for k, p in profiles.items() if p.stage}
        state.record_stages(stages, ctx.now, _entered(dict(profiles)))


def _refresh_lapsed(engine: Engine, ctx: CycleContext) -> None:
    """Waiting people whose qualifying behaviour has left its window (``valid_until`` on the
    queue row) are evaluated again from the mirror: still sales-ready, they keep their
    place at their fresh score; else they leave the queue (``_left_queue``)."""
    lapsed = [r["person_key"] for r in engine.queue_rows(ctx) if _lapses_by(r, ctx.now)]
    for keys in chunked(lapsed, CHUNK):
        _process(engine, ctx, engine.mirrored_people(keys), fresh=False)
    if lapsed:
        log.info("queue_refreshed", evaluated=len(lapsed))


def _lapses_by(row: Mapping[str, Any], now: datetime) -> bool:
    until = (row.get("snapshot") or {}).get("valid_until")
    try:
        return bool(until) and datetime.fromisoformat(str(until)) <= now
    except ValueError:
        return True  # unreadable: evaluate again


def _left_queue(
    engine: Engine, ctx: CycleContext, lapsed: Sequence[tuple[Profile, Qualification]], writes: _Writes
) -> None:
    """Queued people who are no longer sales-ready leave the queue with the reason shown."""
    queued = engine.queued_keys(ctx, [p.key for p, _ in lapsed])
    threshold = engine.mapping.sales_ready.threshold
    for prof, q in lapsed:
        if prof.key not in queued:
            continue
        why = "; ".join(q.blockers) or f"score {q.score} of {threshold}: qualifying activity left its window"
        for person in (prof.hubspot, prof.salesforce):
            if person is not None and person.crm in engine.connectors and not person.converted_to:
                values = _handoff_values(engine, person.crm, STATUS_LAPSED, why, q.score, "", ctx.now)
                writes.put(person.crm, person.id, person.object_type, values)


def _entered(profiles: dict[str, Profile]) -> dict[str, datetime]:
    """When each person entered their stage, where HubSpot's stage-date property says."""
    out: dict[str, datetime] = {}
    for key, prof in profiles.items():
        hs = prof.hubspot
        if hs is None or prof.stage != prof.hubspot_stage:
            continue
        value = hs.values.get(f"hs_lifecyclestage_{hs.values.get('lifecyclestage')}_date")
        try:
            at = datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
        except ValueError:
            at = None
        if at is not None:
            out[key] = at
    return out


def _reconcile(engine: Engine, ctx: CycleContext, crm: str, alive: Mapping[str, frozenset[str]]) -> None:
    """A full list of live ids: whatever else the mirror holds was deleted."""
    if ctx.dry_run:
        return
    gone = [
        Person(crm, pid, object_type, None, {}, ctx.now, deleted=True)  # type: ignore[arg-type]
        for object_type, ids in alive.items()
        for pid in engine.state.people_ids(crm, object_type) - ids
    ]
    log.info("reconciled", crm=crm, deleted=len(gone))
    _forget_deleted(engine, ctx, gone)


def _forget_deleted(engine: Engine, ctx: CycleContext, gone: Sequence[Person]) -> None:
    """Records deleted in a CRM leave the mirror; their people leave the queue."""
    if not gone:
        return
    for crm in engine.connectors:
        ids = [p.id for p in gone if p.crm == crm]
        if ids:
            engine.state.forget_people(crm, ids)
    hs = [p.id for p in gone if p.crm == "hubspot"]
    sf = [p.id for p in gone if p.crm == "salesforce"]
    engine.dequeue(ctx, [i.person_key for i in engine.state.identities_for(hs, sf, [])])


def _plan_handoffs(engine: Engine, ctx: CycleContext, batch: Sequence[Assignment]) -> list[PlannedHandoff]:
    engine.load_profiles(ctx, [a.candidate.person_key for a in batch])
    out = []
    for a in batch:
        handoff = engine.planned_handoff(ctx, a.candidate.person_key, a.rep, a.why)
        if handoff is not None:
            out.append(handoff)
    return out


# --- execute -----------------------------------------------------------------


def _recover_intents(engine: Engine, ctx: CycleContext) -> None:
    """Handoffs a stopped or crashed run did not finish: their tasks found in the CRM if
    written, else written now; then, like any handoff, the people's stage and status."""
    recovered = engine.state.open_intents()
    if not recovered:
        return
    written: list[tuple[str, str, str]] = []
    done = _write_tasks(engine, ctx, recovered, {(e.key, e.crm) for e in recovered}, written)
    keys = sorted({e.person_key for e in recovered if e.key in done})
    engine.load_profiles(ctx, keys)
    reps = {r.email: r for r in engine.mapping.reps.reps}
    handoffs: dict[str, PlannedHandoff] = {}
    for e in recovered:
        prof, q, rep = (
            ctx.profiles.get(e.person_key),
            ctx.qualifications.get(e.person_key),
            reps.get(e.rep_email),
        )
        if e.key in done and e.key not in handoffs and prof is not None and q is not None and rep is not None:
            brief = engine.brief_for(ctx, e.person_key, rep)
            handoffs[e.key] = PlannedHandoff(
                e.key, e.episode, prof, rep, "recovered", q, brief, engine.task_crms(rep)
            )
    _complete(engine, ctx, list(handoffs.values()), done, keys, written)
    engine.forget(ctx, keys)


def _complete(
    engine: Engine,
    ctx: CycleContext,
    handoffs: Sequence[PlannedHandoff],
    done: set[str],
    handed: Sequence[str],
    written: Sequence[tuple[str, str, str]],
) -> None:
    """The people of handoffs whose tasks exist: stage and status written, out of the
    queue; only then are the tasks confirmed in the ledger (the handoffs are complete)."""
    _apply_writes(engine, ctx, _handoff_writes(engine, ctx, handoffs, done))
    engine.state.dequeue(handed)
    engine.state.record_stages(dict.fromkeys(handed, "sql"), ctx.now)
    engine.state.confirm_many(written, ctx.now)


@dataclass
class _Pending:
    """Handoffs whose tasks wait for a full page (tasks are written a whole page a call)."""

    entries: list[LedgerEntry] = field(default_factory=list)
    handoffs: dict[str, PlannedHandoff] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    written: list[tuple[str, str, str]] = field(default_factory=list)  # to confirm once finished


def _execute(
    engine: Engine, ctx: CycleContext, handoffs: Sequence[PlannedHandoff], pending: _Pending, last: bool
) -> None:
    """One batch of handoffs: missing people created, intents recorded, tasks written
    (exactly once), then the handed-off people's stage and status.

    Tasks are written in whole pages; a batch's remainder waits, recorded as intents,
    for the next batch (``last``: written now), so batching costs no extra write call.
    """
    state = engine.state
    _create_missing_people(engine, ctx, handoffs)
    entries = _intents(engine, ctx, handoffs)
    state.record_intents(entries, ctx.run_id)
    pending.entries += entries
    pending.handoffs.update({h.key: h for h in handoffs})
    now: list[LedgerEntry] = []
    for crm, conn in engine.connectors.items():
        mine = [e for e in pending.entries if e.crm == crm]
        now += mine if last else mine[: len(mine) - len(mine) % conn.task_page]
    written = {(e.key, e.crm) for e in now}
    pending.entries = [e for e in pending.entries if (e.key, e.crm) not in written]
    pending.done |= _write_tasks(engine, ctx, now, set(), pending.written)
    waiting = {e.key for e in pending.entries}
    finished = [h for k, h in pending.handoffs.items() if k not in waiting]
    for h in finished:
        del pending.handoffs[h.key]
    handed = sorted({h.profile.key for h in finished if h.key in pending.done})
    ended = {h.key for h in finished}
    _complete(engine, ctx, finished, pending.done, handed, [w for w in pending.written if w[0] in ended])
    pending.written = [w for w in pending.written if w[0] not in ended]


def _nurture(engine: Engine, ctx: CycleContext, plan: HandoffPlan, deferred: Sequence[str]) -> None:
    """Overflow stays in nurture, visibly; then old activity is pruned."""
    state = engine.state
    waiting = set(deferred)
    queued = {row["person_key"]: row for row in engine.queue_rows(ctx) if row["person_key"] in waiting}
    reasons = {n.person_key: n.reason for n in plan.nurture}
    writes = _Writes()
    for key in deferred:
        _nurture_writes(engine, ctx, key, reasons.get(key, STATUS_WAITING), queued.get(key), writes)
    for key in sorted(plan.set_aside_errors):
        row = queued.get(key) or {}
        if row.get("status_written") != _shown(reasons[key]):  # said once, when first set aside
            _set_aside_error(engine, ctx, row.get("snapshot") or {}, key, reasons[key])
    _apply_writes(engine, ctx, writes)
    for key in deferred:
        reason = reasons.get(key, STATUS_WAITING)
        state.mark_status_written(key, _shown(reason), reason)
    window = ctx.now - timedelta(days=engine.window_days)
    state.prune_activities(window - timedelta(days=1))


def _waiting_status(reason: str) -> str:
    """The status written for a deferred person: one of ``HANDOFF_STATUSES`` (the reason says why)."""
    if is_set_aside(reason):
        return STATUS_SET_ASIDE
    return STATUS_WAITING if reason.startswith("rep capacity") else STATUS_NO_REP


def _shown(reason: str) -> str:
    """What the queue remembers was written for a deferred person (status and reason)."""
    return f"{_waiting_status(reason)}: {reason}"


def _set_aside_error(
    engine: Engine, ctx: CycleContext, snap: Mapping[str, Any], key: str, reason: str
) -> None:
    """A person set aside for their records' data: a record error on each of those records."""
    for crm in engine.connectors:
        pid = snap.get(f"{crm}_id")
        if pid:
            kind = snap.get(f"{crm}_type") or "contact"
            _error(engine, ctx, crm, f"{crm}:{kind}/{pid}", reason)
    if not any(snap.get(f"{crm}_id") for crm in engine.connectors):
        _error(engine, ctx, "state", key, reason)


def _create_missing_people(engine: Engine, ctx: CycleContext, handoffs: Sequence[PlannedHandoff]) -> None:
    """A person handed to a rep in a CRM where they do not exist yet is created there."""
    todo: dict[str, list[tuple[PlannedHandoff, PersonCreate]]] = {}
    for h in handoffs:
        prof = h.profile
        if "salesforce" in h.task_crms and prof.salesforce is None and prof.hubspot:
            todo.setdefault("salesforce", []).append((h, _lead_create(engine, ctx, prof, h)))
        if "hubspot" in h.task_crms and prof.hubspot is None and prof.salesforce:
            todo.setdefault("hubspot", []).append((h, _contact_create(engine, ctx, prof, h)))
    for crm, items in todo.items():
        results = {r.key: r for r in engine.connectors[crm].create_people([c for _, c in items])}
        taken = _linked_elsewhere(engine, crm, [r.crm_id for r in results.values() if r.ok and r.crm_id])
        for h, create in items:
            person = _created(engine, ctx, crm, h, create, results.get(create.external_id), taken)
            if person is None:
                continue
            setattr(h.profile, crm, person)
            taken[person.id] = h.profile.key  # a second create in this batch matching it is not them
            engine.state.save_people([person])
            engine.state.save_identities([h.profile.identity()])


def _created(
    engine: Engine,
    ctx: CycleContext,
    crm: str,
    h: PlannedHandoff,
    create: PersonCreate,
    res: WriteResult | None,
    taken: Mapping[str, str],
) -> Person | None:
    """The person a create made (or matched), or None with the reason recorded."""
    owner = taken.get(res.crm_id or "") if res else None
    if res is None or not res.ok or not res.crm_id or (owner and owner != h.profile.key):
        reason = (res.error if res else None) or "no result"
        if owner and res and res.ok:  # the CRM matched a record that is someone else
            reason = f"set aside: the {crm} record {res.crm_id} it matched is already {owner}"
        _error(engine, ctx, crm, f"create for {h.profile.key}", reason)
        return None
    ctx.count("created", crm, 1 if res.created is not False else 0)
    return Person(
        crm=crm,  # type: ignore[arg-type]
        id=res.crm_id,
        object_type=create.object_type,
        email=h.profile.email,
        values={k: None if v is None else str(v) for k, v in create.values.items()},
        modified_at=ctx.now,
        linked_id=create.external_id,
    )


def _linked_elsewhere(engine: Engine, crm: str, ids: Sequence[str]) -> dict[str, str]:
    """Record id -> the person key its identity already belongs to."""
    found = engine.state.identities_for(ids if crm == "hubspot" else [], ids if crm != "hubspot" else [], [])
    return {str(i.hubspot_id if crm == "hubspot" else i.salesforce_id): i.person_key for i in found}


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
    hs_id = prof.hubspot.id if prof.hubspot else prof.key
    values[conn.handoff_fields["link"]] = hs_id
    return PersonCreate(external_id=hs_id, object_type="lead", values=values)


def _contact_create(engine: Engine, ctx: CycleContext, prof: Profile, h: PlannedHandoff) -> PersonCreate:
    conn = engine.connectors["hubspot"]
    values = _mapped_values(engine, prof, "hubspot", "contact")
    values["hubspot_owner_id"] = ctx.owner_ids("hubspot")[h.rep.email]
    sf_id = prof.salesforce.id if prof.salesforce else prof.key
    values[conn.handoff_fields["link"]] = sf_id
    return PersonCreate(external_id=sf_id, object_type="contact", values=values)


def _intents(engine: Engine, ctx: CycleContext, handoffs: Sequence[PlannedHandoff]) -> list[LedgerEntry]:
    entries = []
    for h in handoffs:
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
    written: list[tuple[str, str, str]],
) -> set[str]:
    """Write every intent's task exactly once; returns the handoff keys now done.

    The tasks written (or found) go to ``written`` as (key, CRM, task id): the caller
    confirms them in the ledger once the people are marked handed off, so a stop or
    crash in between leaves open intents, which the next run finishes.
    """
    done: set[str] = set()
    for crm, conn in engine.connectors.items():
        mine = [e for e in entries if e.crm == crm]
        if mine:
            done |= _write_crm_tasks(engine, ctx, crm, conn, mine, maybe_written, written)
    return done


def _write_crm_tasks(
    engine: Engine,
    ctx: CycleContext,
    crm: str,
    conn: Connector,
    mine: Sequence[LedgerEntry],
    maybe_written: set[tuple[str, str]],
    written: list[tuple[str, str, str]],
) -> set[str]:
    """One CRM's tasks: those an earlier run may have written looked up by key first."""
    check = [e.key for e in mine if (e.key, e.crm) in maybe_written]
    existing = conn.find_tasks(check) if check else {}
    written += [(key, crm, task_id) for key, task_id in existing.items()]
    if existing:
        ctx.count("tasks_existing", crm, len(existing))
    done = set(existing)
    todo = [_task(e) for e in mine if e.key not in existing]
    for res in conn.write_tasks(todo) if todo else []:
        if res.ok and res.crm_id:
            written.append((res.key, crm, res.crm_id))
            ctx.count("tasks_created" if res.created is not False else "tasks_existing", crm)
            done.add(res.key)
        else:
            engine.state.fail(res.key, crm, res.error or "rejected")
            _error(engine, ctx, crm, f"task {res.key}", res.error or "rejected")
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


def _handoff_writes(
    engine: Engine, ctx: CycleContext, handoffs: Sequence[PlannedHandoff], done: set[str]
) -> _Writes:
    """Handed off: stage SQL, handoff status/reason/score/rep and the owner, both CRMs."""
    writes = _Writes()
    for h in handoffs:
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
            other = h.profile.salesforce if crm == "hubspot" else h.profile.hubspot
            if other and person.linked_id != other.id:  # e.g. the lead just created for this handoff
                values[engine.connectors[crm].handoff_fields["link"]] = other.id
            owner = ctx.owner_ids(crm).get(h.rep.email)
            if (
                engine.mapping.handoff.set_owner
                and owner
                and not (crm == "salesforce" and person.converted_to)
            ):
                values["hubspot_owner_id" if crm == "hubspot" else "OwnerId"] = owner
            writes.put(crm, person.id, person.object_type, values)
    return writes


def _sync_writes(engine: Engine, prof: Profile, writes: _Writes) -> None:
    """Field-sync writes, cross-links, and stage outcomes flowing between the CRMs."""
    hs, sf = prof.hubspot, prof.salesforce
    lc = engine.mapping.lifecycle
    ahead = prof.stage is not None and prof.stage in lc.funnel
    if hs and "hubspot" in engine.connectors:
        values: dict[str, Any] = dict(prof.to_hubspot)
        if sf and hs.linked_id != sf.id:
            values[engine.connectors["hubspot"].handoff_fields["link"]] = sf.id
        if ahead and prof.stage != prof.hubspot_stage:  # backward only where allowed (may_move)
            values |= _stage_values(engine, "hubspot", hs, prof.hubspot_stage, str(prof.stage), writes)
        writes.put("hubspot", hs.id, hs.object_type, values)
    if sf and "salesforce" in engine.connectors and not sf.converted_to:
        values = {k: v for k, v in prof.to_salesforce.items() if not (k == "Email" and not v)}
        if hs and sf.linked_id != hs.id:
            values[engine.connectors["salesforce"].handoff_fields["link"]] = hs.id
        if ahead and funnel_rank(lc, prof.stage) > funnel_rank(lc, prof.salesforce_stage):
            values |= _stage_values(engine, "salesforce", sf, prof.salesforce_stage, str(prof.stage), writes)
        writes.put("salesforce", sf.id, sf.object_type, values)


def _nurture_writes(
    engine: Engine, ctx: CycleContext, key: str, reason: str, queued: dict[str, Any] | None, writes: _Writes
) -> None:
    """Overflow stays in nurture, visibly: status and reason on the person (once)."""
    score = int(queued["score"]) if queued else 0
    status = _waiting_status(reason)
    if queued and queued.get("status_written") == _shown(reason):
        return
    snap = (queued or {}).get("snapshot") or {}
    shown = f"{reason} (score {score})"
    prof = ctx.profiles.get(key)
    for crm in ("hubspot", "salesforce"):
        if crm not in engine.connectors:
            continue
        person = getattr(prof, crm) if prof else None
        if person is not None and crm == "salesforce" and person.converted_to:
            continue
        values = _handoff_values(engine, crm, status, shown, score, "", ctx.now)
        if person is not None:
            own = prof.hubspot_stage if crm == "hubspot" else prof.salesforce_stage  # type: ignore[union-attr]
            if own == "lead" and not is_set_aside(reason):  # waiting to be worked: an MQL
                values |= _stage_values(engine, crm, person, own, "mql", writes)
            writes.put(crm, person.id, person.object_type, values)
        elif snap.get(f"{crm}_id"):
            writes.put(
                crm,
                snap[f"{crm}_id"],
                snap.get(f"{crm}_type") or ("contact" if crm == "hubspot" else "lead"),
                values,
            )


def _apply_writes(
    engine: Engine, ctx: CycleContext, writes: _Writes, mirror: bool = True
) -> dict[str, dict[str, dict[str, Any]]]:
    """Send the writes, each CRM's on a thread of its own (the calls overlap); the results
    are then recorded on this thread, in CRM order. Returns the values written, by CRM and
    person id; ``mirror``: also applied to the mirror now."""
    jobs: dict[str, tuple[list[PersonUpdate], list[PersonUpdate]]] = {}
    for crm in engine.connectors:
        clear = [
            PersonUpdate(pid, ot, {"lifecyclestage": ""}) for (c, pid, ot) in writes.clear_first if c == crm
        ]
        updates = [PersonUpdate(pid, ot, vals) for (c, pid, ot), vals in writes.values.items() if c == crm]
        if clear or updates:
            jobs[crm] = (clear, updates)

    def send(crm: str) -> tuple[list[WriteResult], list[WriteResult]]:
        conn = engine.connectors[crm]
        clear, updates = jobs[crm]
        cleared = conn.update_people(clear) if clear else []
        return cleared, (conn.update_people(updates) if updates else [])

    if len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="writes") as pool:
            futures = {crm: pool.submit(send, crm) for crm in jobs}
        done = {crm: f.result() for crm, f in futures.items()}  # the first CRM's error, if any
    else:
        done = {crm: send(crm) for crm in jobs}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for crm, (cleared, results) in done.items():
        out[crm] = _record_writes(engine, ctx, crm, writes, jobs[crm][1], cleared, results)
        if mirror:
            _mirror_writes(engine, crm, out[crm], {})
    return out


def _record_writes(
    engine: Engine,
    ctx: CycleContext,
    crm: str,
    writes: _Writes,
    updates: Sequence[PersonUpdate],
    cleared: Sequence[WriteResult],
    results: Sequence[WriteResult],
) -> dict[str, dict[str, Any]]:
    """One CRM's person-write results: rejections recorded; the values written, by person id."""
    for res in cleared:
        if not res.ok:
            _error(engine, ctx, crm, f"person {res.key}", res.error or "rejected")
    written: dict[str, dict[str, Any]] = {}
    types = {u.person_id: u.object_type for u in reversed(updates)}  # the first, as before
    for res in results:
        if res.ok:
            ctx.count("updated", crm)
            written[res.key] = writes.values[(crm, res.key, types[res.key])]
        else:
            _error(engine, ctx, crm, f"person {res.key}", res.error or "rejected")
    return written


def _mirror_writes(
    engine: Engine, crm: str, written: dict[str, dict[str, Any]], known: Mapping[tuple[str, str], Person]
) -> None:
    """Our own writes go into the mirror too, so the next chunk or cycle does not decide
    (and write) them again from a stale copy."""
    if not written:
        return
    link = engine.connectors[crm].handoff_fields["link"]
    owner = "hubspot_owner_id" if crm == "hubspot" else "OwnerId"
    with engine.state.batch(lazy_sync=True):  # a cache: the next ordinary commit makes it durable
        fresh = []
        mirrored = [known[(crm, pid)] for pid in written if (crm, pid) in known]  # as just saved
        mirrored += engine.state.people_by_ids(crm, [pid for pid in written if (crm, pid) not in known])
        for person in mirrored:
            values = {k: None if v is None else str(v) for k, v in written[person.id].items()}
            fresh.append(
                replace(
                    person,
                    values={**person.values, **values},
                    linked_id=values.get(link, person.linked_id),
                    owner_id=values.get(owner, person.owner_id),
                )
            )
        engine.state.save_people(fresh)


# --- summary ------------------------------------------------------------------

WRITE_MARKERS = ("batch/create", "batch/update", "batch/upsert", "composite/sobjects")


def _call_split(calls: Counter[str]) -> dict[str, int]:
    """API calls split into pulls (reads) and writes by endpoint."""
    writes = sum(
        n for name, n in calls.items() if any(m in name for m in WRITE_MARKERS) and not name.startswith("GET")
    )
    return {"pull": sum(calls.values()) - writes, "write": writes}


def _per_1000(calls: int, records: int) -> float | None:
    return round(calls * 1000 / records, 1) if records else None


def _summary(engine: Engine, ctx: CycleContext, plan: HandoffPlan) -> dict[str, Any]:
    per_rep = Counter(h.rep for h in plan.handoffs)
    counts = {
        k: {crm: ctx.counts.get(k, Counter()).get(crm, 0) for crm in engine.connectors}
        for k in ("tasks_created", "tasks_existing", "created", "updated", "unchanged")
    }
    split = {crm: _call_split(conn.calls) for crm, conn in engine.connectors.items()}
    written = {
        crm: counts["tasks_created"][crm] + counts["updated"][crm] + counts["created"][crm]
        for crm in engine.connectors
    }
    return {
        "run_id": ctx.run_id,
        "dry_run": ctx.dry_run,
        "at": ctx.now.isoformat(),
        "stopped": ctx.stopped,
        "people_pulled": {crm: ctx.pulled.get(crm, 0) for crm in engine.connectors},
        "people_unchanged": counts["unchanged"],  # pulled, but only our own writes had changed them
        "activities_pulled": ctx.pulled_activities,
        "activities_new": ctx.new_activities,
        "profiles_scored": ctx.scored,
        "qualified": len(ctx.qualified),
        "handed_off": len(plan.handoffs),
        "handed_off_per_rep": dict(per_rep),
        "capacity_per_rep": plan.capacity,
        "unavailable_reps": plan.unavailable_reps,
        "kept_in_nurture": sum(1 for n in plan.nurture if not is_set_aside(n.reason)),
        "set_aside": sum(1 for n in plan.nurture if is_set_aside(n.reason)),
        "nurture_reasons": dict(Counter(n.reason for n in plan.nurture)),
        "tasks_created": counts["tasks_created"],
        "tasks_already_existed": counts["tasks_existing"],
        "people_created": counts["created"],
        "people_updated": counts["updated"],
        "api_calls": {crm: sum(conn.calls.values()) for crm, conn in engine.connectors.items()},
        "rate_limit_wait_seconds": {
            crm: round(float(getattr(conn, "rate_limit_waited", 0.0)), 3)
            for crm, conn in engine.connectors.items()
        },
        "api_calls_split": split,
        "api_calls_per_1000": {
            crm: {
                "people_pulled": _per_1000(split[crm]["pull"], ctx.pulled.get(crm, 0)),
                "records_written": _per_1000(split[crm]["write"], written[crm]),
            }
            for crm in engine.connectors
        },
        "errors": ctx.errors,
        "plan": [asdict(h) for h in plan.handoffs],
        "nurture": [
            {"person": n.name, "person_key": n.person_key, "score": n.score, "reason": n.reason}
            for n in plan.nurture[:200]
        ],
    }
