"""Stage 3, plan: who goes to which rep this week, read from the queue in a stream.

Entry point: ``plan(engine, ctx, summary) -> Iterator[PlanStep]``. The queue is read a
page at a time in its order (highest score, longest waiting); each page is checked for
people to set aside (``sync.setaside``) and routed within the reps' weekly capacity
(``sync.routing.Router``, whose loads carry over between pages); each routed person still
sales-ready becomes a ``PlannedHandoff`` with its brief. Memory holds one page, so it
stays flat at any queue size. Nothing is written here: ``sync.execute`` does that.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from more_itertools import chunked

from crm_handoff.records import normalize_email
from mappings.context import rep_view
from mappings.models import Rep
from sync import queue
from sync.brief import Brief, build_brief
from sync.calendar import available
from sync.context import PLAN_BATCH, CycleContext, HandoffPlan, NurtureItem, PlannedHandoff
from sync.engine import Engine
from sync.evaluate import episode, load_profiles
from sync.items import QueueItem
from sync.outside import add_outside_work
from sync.routing import Assignment, Candidate, Router, week_start
from sync.setaside import QueuedPerson, SetAside, set_aside
from sync.summary import RepCapacity


@dataclass(frozen=True)
class Deferred:
    """A queued person not handed off this cycle, the reason, and whether it is a record
    error (a shared address) rather than a wait."""

    item: QueueItem
    reason: str
    is_error: bool = False


@dataclass
class PlanStep:
    """One batch of the plan: handoffs to execute, and the people deferred meanwhile."""

    handoffs: list[PlannedHandoff] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)
    routed: list[str] = field(default_factory=list)  # person keys routed (handed off or not)


def plan(engine: Engine, ctx: CycleContext, summary: HandoffPlan) -> Iterator[PlanStep]:
    """Route the whole queue within this week's capacity, a batch at a time (see the module).

    ``summary`` receives the reps' capacity and who could not receive tasks, and counts
    every deferred person.
    """
    reps, summary.unavailable_reps = available_reps(engine, ctx)
    weeks = {r.email: week_start(ctx.now, r.timezone) for r in engine.mapping.reps.reps}
    used = engine.state.used_capacity(weeks)
    used = add_outside_work(used, engine.mapping.reps, engine.connectors, ctx.owner_ids)  # reps.yaml
    router = Router(reps, used, engine.mapping.reps.pools)
    first: dict[str, str] = {}  # email -> the first queued person with it (duplicates)
    for page in queue.pages(engine.state, ctx):
        aside = _set_aside(engine, page, first)
        by_key = {i.person_key: i for i in page}
        assignments, deferrals = router.route([_candidate(i) for i in page if i.person_key not in aside])
        deferred = [Deferred(by_key[d.candidate.person_key], d.reason) for d in deferrals]
        deferred += [Deferred(by_key[k], a.reason, a.is_error) for k, a in aside.items()]
        for d in deferred:
            summary.defer(
                NurtureItem(
                    d.item.person_key, d.item.snapshot.name or d.item.person_key, d.item.score, d.reason
                )
            )
        steps = [
            PlanStep(routed=[a.candidate.person_key for a in b]) for b in chunked(assignments, PLAN_BATCH)
        ]
        steps = steps or [PlanStep()]
        steps[-1].deferred = deferred
        for step, batch in zip(steps, chunked(assignments, PLAN_BATCH), strict=False):
            load_profiles(engine, ctx, step.routed)
            step.handoffs = [
                h for a in batch if (h := planned_handoff(engine, ctx, a.candidate.person_key, a.rep, a.why))
            ]
            summary.from_nurture += _waited(batch, step.handoffs, ctx)
        yield from steps
    for email, load in router.loads.items():
        summary.capacity[email] = RepCapacity(load.capacity, load.used_before, load.assigned, load.left)


def _waited(batch: Sequence[Assignment], handoffs: Sequence[PlannedHandoff], ctx: CycleContext) -> int:
    """How many of these handoffs are people who waited in nurture since an earlier cycle
    (overflow offered again): queued before this cycle began."""
    made = {h.profile.key for h in handoffs}
    return sum(
        1
        for a in batch
        if a.candidate.person_key in made and a.candidate.qualified_at and a.candidate.qualified_at < ctx.now
    )


def available_reps(engine: Engine, ctx: CycleContext) -> tuple[list[Rep], dict[str, str]]:
    """Reps who can receive tasks now, and why the others cannot: inactive, outside their
    working hours, out of office or on a holiday (``reps.yaml availability``), or without
    an active user in a CRM their tasks go to."""
    ok: list[Rep] = []
    missing: dict[str, str] = {}
    for rep in engine.mapping.reps.reps:
        if not rep.active:
            missing[rep.email] = "inactive in reps.yaml"
            continue
        if not available(engine.mapping.reps.schedule_for(rep), ctx.now):
            missing[rep.email] = "not available now (working hours, out of office or a holiday in reps.yaml)"
            continue
        gaps = [crm for crm in engine.task_crms(rep) if rep.email not in ctx.owner_ids(crm)]
        if gaps:
            missing[rep.email] = f"no active {' or '.join(gaps)} user with this email"
        else:
            ok.append(rep)
    return ok, missing


def _candidate(item: QueueItem) -> Candidate:
    snap = item.snapshot
    return Candidate(item.person_key, item.score, snap.values, snap.owner_email, item.queued_at)


def _set_aside(engine: Engine, page: Sequence[QueueItem], first: dict[str, str]) -> dict[str, SetAside]:
    """Queued people who cannot be placed (``sync.setaside``), from the mirror and ledger."""
    queued = [
        QueuedPerson(i.person_key, normalize_email(i.snapshot.values.get("email")), i.snapshot.set_aside)
        for i in page
    ]
    emails = [q.email for q in queued if q.email]
    state = engine.state
    return set_aside(queued, state.records_per_email(emails), state.handed_off_by_email(emails), first=first)


def brief_for(engine: Engine, ctx: CycleContext, key: str, rep: Rep) -> Brief:
    """The brief a rep receives with a handoff of this (loaded) person."""
    prof, q = ctx.profiles[key], ctx.qualifications[key]
    return build_brief(
        engine.mapping.handoff,
        engine.mapping.sales_ready.threshold,
        prof.values,
        prof.stage,
        q.score,
        q.reasons,
        ctx.activities.get(key, []),
        rep_view(rep),
        ctx.now,
        q.met_details if engine.mapping.sales_ready.definitions else (),
    )


def planned_handoff(engine: Engine, ctx: CycleContext, key: str, rep: Rep, why: str) -> PlannedHandoff | None:
    """The handoff for a routed person, if they are (still) sales-ready."""
    prof, q = ctx.profiles.get(key), ctx.qualifications.get(key)
    if prof is None or q is None or not q.qualified:
        return None
    number, allowed = episode(engine, ctx, prof)
    if not allowed:
        return None
    return PlannedHandoff(
        key=episode_key(key, number),
        episode=number,
        profile=prof,
        rep=rep,
        why=why,
        qualification=q,
        brief=brief_for(engine, ctx, key, rep),
        task_crms=engine.task_crms(rep),
    )


def episode_key(person_key: str, number: int) -> str:
    """The handoff key: lower-case (HubSpot matches IN filters on lower-case text).

    Salesforce 18-character ids are unique regardless of case, so lowering is safe.
    """
    return f"{person_key.lower()}#{number}"
