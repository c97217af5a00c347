"""``handoff simulate --config NEW``: the plan a changed mapping would make, beside today's.

Entry point: ``simulate(state, sides, now, crms) -> dict`` (JSON-able) and
``print_simulation``. For each mapping (the current one and the new one) every mirrored
person is evaluated with the cycle's own code (``sync.evaluate.profiles_for``: merge,
stages, field values, qualification; ``episode`` for people handed off before), the way
the next cycle does after a mapping change (``sync.remap``: a changed mapping marks
everyone). The resulting queue is routed as ``sync.plan`` routes it: set-asides
(``sync.setaside``), then ``sync.routing.Router`` within this week's capacity left (the
ledger's handoffs this week, reps' availability now, the owners cache for who has a CRM
user). The mirror is read a page at a time; only the queue candidates are kept, with the
few values routing reads.

No CRM is called and nothing is written. What that leaves out: changes made in the
CRMs since the last cycle, the follow-up step's reassignments (they take capacity before
new handoffs), and a fresh count of outside work: ``reps.yaml outside_work`` is taken as
the last cycle's figure this week (its capacity used before routing minus the ledger's
handoffs before it), 0 without such a cycle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from more_itertools import chunked
from sqlalchemy import func, select

from crm_handoff.records import normalize_email
from mappings.models import MappingSet, Rep
from sync.context import CycleContext
from sync.engine import Engine
from sync.evaluate import episode, profiles_for, snapshot
from sync.explain import cached_owners
from sync.outside import open_work_spec
from sync.plan import available_reps
from sync.profiles import Profile
from sync.queue import PAGE
from sync.remap import people_pages
from sync.routing import Candidate, Router, week_start
from sync.setaside import QueuedPerson, is_set_aside, missing_email, set_aside
from sync.state import StateStore, ledger
from sync.summary import RunSummary

SHOWN = 1000  # people listed by name in each difference (all are counted)
CRMS = ("hubspot", "salesforce")


class OfflineEngine(Engine):
    """An engine without connectors: tasks go to the CRMs ``sync`` would write them in."""

    def __init__(self, mapping: MappingSet, state: StateStore, crms: Sequence[str]) -> None:
        super().__init__(mapping, state, {})
        self.crms = tuple(crms)

    def task_crms(self, rep: Rep) -> tuple[str, ...]:
        """As ``Engine.task_crms``, over the configured CRMs."""
        where = self.mapping.handoff.task_in
        wanted = self.crms if where == "both" else (rep.works_in if where == "rep_crm" else where,)
        return tuple(c for c in wanted if c in self.crms)


@dataclass(frozen=True, slots=True)
class Queued:
    """A person the mapping would queue: what routing and the report need of them."""

    key: str
    score: int
    queued_at: datetime
    name: str
    email: str | None
    blocked: str | None
    owner_email: str | None
    values: Mapping[str, str | None]  # only the fields routing reads
    definitions: tuple[str, ...]
    records: tuple[tuple[str, str], ...] = ()  # (CRM, record id)

    def order(self) -> tuple[int, str, str]:
        """The queue's order (``QueueItem.order``)."""
        return (-self.score, self.queued_at.isoformat(), self.key)


@dataclass
class Side:
    """One mapping's simulated cycle."""

    label: str
    config: str
    engine: OfflineEngine
    queued: list[Queued] = field(default_factory=list)
    handed: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (rep, why)
    deferred: dict[str, str] = field(default_factory=dict)  # key -> reason
    reasons: Counter[str] = field(default_factory=Counter)
    capacity: dict[str, dict[str, int]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    outside: dict[str, int] = field(default_factory=dict)

    @property
    def mapping(self) -> MappingSet:
        return self.engine.mapping

    def by_key(self) -> dict[str, Queued]:
        return {q.key: q for q in self.queued}


# --- the whole mirror, evaluated ---------------------------------------------------


def simulate(
    state: StateStore,
    sides: Sequence[tuple[str, str, MappingSet]],
    now: datetime,
    crms: Sequence[str] = (),
) -> dict[str, Any]:
    """Simulate the next cycle under each (label, config, mapping); the first is compared
    with the last. Reads the state only."""
    owners = cached_owners(state)
    crms = tuple(crms) or tuple(c for c in CRMS if c in owners)
    runs = [Side(label, config, OfflineEngine(m, state, crms)) for label, config, m in sides]
    _evaluate_all(state, runs, owners, now)
    last = _last_cycle(state)
    for side in runs:
        _route(state, side, owners, now, last)
    return _report(state, runs[0], runs[-1], owners, now, last)


def _evaluate_all(state: StateStore, sides: Sequence[Side], owners: Mapping[str, Any], now: datetime) -> None:
    """Every mirrored person under each mapping, a page of the mirror at a time."""
    seen: set[str] = set()  # people in both CRMs, whose page came already
    for page in people_pages(state):
        wanted: dict[str, list[tuple[Side, Queued]]] = {}
        both: set[str] = set()
        for side in sides:
            ctx = CycleContext(now=now, dry_run=True, owners=dict(owners))
            profiles = profiles_for(side.engine, ctx, page)  # the grouping is the mapping's own
            for key, prof in profiles.items():
                if key in seen:
                    continue
                if prof.hubspot and prof.salesforce:
                    both.add(key)
                item = _decide(side.engine, ctx, prof)
                if item is not None:
                    wanted.setdefault(key, []).append((side, item))
        seen |= both
        queued_at = {k: i.queued_at for k, i in state.queue_items(list(wanted)).items()}
        for key, entries in wanted.items():
            for side, item in entries:
                at = queued_at.get(key, now)  # queued before: keeps its place in the queue
                side.queued.append(item if at == now else _with_time(item, at))


def _with_time(item: Queued, at: datetime) -> Queued:
    return Queued(
        item.key,
        item.score,
        at,
        item.name,
        item.email,
        item.blocked,
        item.owner_email,
        item.values,
        item.definitions,
        item.records,
    )


def _decide(engine: Engine, ctx: CycleContext, prof: Profile) -> Queued | None:
    """The person as ``sync.evaluate`` queues them (sales-ready, or set aside for a missing
    email, and allowed a new handoff), else None."""
    q = ctx.qualifications[prof.key]
    threshold = engine.mapping.sales_ready.threshold
    would = threshold if q.definitions_met else min(q.score, threshold - 1)
    blocked = None if q.qualified else missing_email(would, threshold, q.blockers)
    if not (q.qualified or blocked) or not episode(engine, ctx, prof)[1]:
        return None
    snap = snapshot(ctx, prof, q, blocked)
    routing = _routing_fields(engine.mapping)
    return Queued(
        key=prof.key,
        score=q.score,
        queued_at=ctx.now,
        name=snap.name,
        email=normalize_email(snap.values.get("email")),
        blocked=blocked,
        owner_email=snap.owner_email,
        values={f: snap.values.get(f) for f in routing},
        definitions=q.definitions_met,
        records=tuple((crm, rid) for crm, (rid, _) in sorted(snap.records.items())),
    )


def _routing_fields(mapping: MappingSet) -> tuple[str, ...]:
    """The canonical fields routing reads: the country (territories) and the pools' fields."""
    return tuple(sorted({"country", *(p.field for p in mapping.reps.pools)}))


# --- routing, as sync.plan routes ----------------------------------------------------


def _route(
    state: StateStore, side: Side, owners: Mapping[str, Any], now: datetime, last: RunSummary | None
) -> None:
    """Route the side's queue within this week's capacity left (``sync.plan.plan``)."""
    engine = side.engine
    ctx = CycleContext(now=now, dry_run=True, owners=dict(owners))
    reps, side.unavailable = available_reps(engine, ctx)
    cfg = side.mapping.reps
    weeks = {r.email: week_start(now, r.timezone) for r in cfg.reps}
    used = state.used_capacity(weeks)
    side.outside = outside_from_last_cycle(state, side.mapping, weeks, last)
    before = {e: used.get(e, 0) + side.outside.get(e, 0) for e in weeks}
    router = Router(reps, before, cfg.pools)
    first: dict[str, str] = {}
    once = {q.key: q for q in reversed(side.queued)}  # a person whose records fell on two pages: once
    side.queued = sorted(once.values(), key=Queued.order)
    for page in chunked(side.queued, PAGE):
        emails = [q.email for q in page if q.email]
        aside = set_aside(
            [QueuedPerson(q.key, q.email, q.blocked) for q in page],
            state.records_per_email(emails),
            state.handed_off_by_email(emails),
            first=first,
        )
        cands = [Candidate(q.key, q.score, q.values, q.owner_email, q.queued_at) for q in page]
        assignments, deferrals = router.route([c for c in cands if c.person_key not in aside])
        for a in assignments:
            side.handed[a.candidate.person_key] = (a.rep.email, a.why)
        for key, reason in [(d.candidate.person_key, d.reason) for d in deferrals] + [
            (k, a.reason) for k, a in aside.items()
        ]:
            side.deferred[key] = reason
            side.reasons[reason] += 1
    for email, load in router.loads.items():
        side.capacity[email] = {
            "capacity": load.capacity,
            "used_before": load.used_before,
            "outside_work": side.outside.get(email, 0),
            "assigned": load.assigned,
            "left": load.left,
        }


def outside_from_last_cycle(
    state: StateStore, mapping: MappingSet, weeks: Mapping[str, date], last: RunSummary | None
) -> dict[str, int]:
    """Each rep's outside work in leads, as the last cycle counted it this week: its
    capacity used before routing minus the ledger's handoffs of the week before it
    (no CRM is asked); 0 for a rep whose outside work does not count, or without a cycle
    this week."""
    cycle = last.cycle if last else None
    if cycle is None:
        return {}
    try:
        at = datetime.fromisoformat(cycle.at)
    except ValueError:
        return {}
    out: dict[str, int] = {}
    for rep in mapping.reps.reps:
        seen = cycle.capacity_per_rep.get(rep.email)
        rule = mapping.reps.outside_for(rep)
        counts = any(open_work_spec(rule, crm) is not None for crm in CRMS)
        if seen is None or not (rep.active and counts) or week_start(at, rep.timezone) != weeks[rep.email]:
            continue
        out[rep.email] = max(0, seen.used_before - _ledger_before(state, rep.email, weeks[rep.email], at))
    return out


def _ledger_before(state: StateStore, email: str, week: date, at: datetime) -> int:
    """Handoffs (not failed) of the rep's week planned before ``at``."""
    q = select(func.count(func.distinct(ledger.c.key))).where(
        ledger.c.rep_email == email,
        ledger.c.week_start == week,
        ledger.c.status != "failed",
        ledger.c.planned_at < at,
    )
    with state.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def _last_cycle(state: StateStore) -> RunSummary | None:
    """The last real (not dry-run) cycle's summary."""
    for row in state.recent_runs(20):
        run = RunSummary.from_json(row.get("summary"))
        if run.cycle is not None and not run.cycle.dry_run:
            return run
    return None


# --- the comparison -----------------------------------------------------------------


def _report(
    state: StateStore,
    cur: Side,
    new: Side,
    owners: Mapping[str, Any],
    now: datetime,
    last: RunSummary | None,
) -> dict[str, Any]:
    only_new = sorted(set(new.handed) - set(cur.handed))
    only_cur = sorted(set(cur.handed) - set(new.handed))
    moved = sorted(k for k in set(new.handed) & set(cur.handed) if new.handed[k][0] != cur.handed[k][0])
    reps = sorted(set(cur.capacity) | set(new.capacity) | set(cur.unavailable) | set(new.unavailable))
    per_rep = {
        r: {
            "current": sum(1 for v in cur.handed.values() if v[0] == r),
            "new": sum(1 for v in new.handed.values() if v[0] == r),
        }
        for r in reps
    }
    cycle = last.cycle if last else None
    return {
        "as_of": now.isoformat(),
        "last_cycle": cycle.at if cycle else None,
        "crm_calls": 0,
        "current": _side_json(cur),
        "new": _side_json(new),
        "per_rep": per_rep,
        "only_new": _people(state, new, cur, only_new, owners, now),
        "only_current": _people(state, cur, new, only_cur, owners, now),
        "moved": {
            "count": len(moved),
            "people": [
                {"person_key": k, "current": cur.handed[k][0], "new": new.handed[k][0]} for k in moved[:SHOWN]
            ],
        },
        "outside_work": {
            "source": _outside_source(cur, new, cycle is not None),
            "current": cur.outside,
            "new": new.outside,
        },
    }


def _outside_source(cur: Side, new: Side, had_cycle: bool) -> str:
    """Where the outside work counted came from, in words."""
    counted = any(
        open_work_spec(side.mapping.reps.outside_for(rep), crm) is not None
        for side in (cur, new)
        for rep in side.mapping.reps.reps
        if rep.active
        for crm in CRMS
    )
    if not counted:
        return "not counted (reps.yaml outside_work is off)"
    if had_cycle:
        return "the last cycle's count this week (no CRM call; 0 for a rep it did not count)"
    return "0: no earlier cycle to take the count from (no CRM call)"


def _side_json(side: Side) -> dict[str, Any]:
    ready = sum(1 for q in side.queued if q.blocked is None)
    return {
        "config": side.config,
        "threshold": side.mapping.sales_ready.threshold,
        "definitions": [d.name for d in side.mapping.sales_ready.definitions],
        "sales_ready": ready,
        "queued": len(side.queued),
        "handed_off": len(side.handed),
        "kept_in_nurture": sum(n for r, n in side.reasons.items() if not is_set_aside(r)),
        "set_aside": sum(n for r, n in side.reasons.items() if is_set_aside(r)),
        "nurture_reasons": dict(side.reasons),
        "capacity_per_rep": side.capacity,
        "unavailable_reps": side.unavailable,
    }


def _people(
    state: StateStore,
    side: Side,
    other: Side,
    keys: Sequence[str],
    owners: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """People handed off under ``side`` only: to whom, why sales-ready, why not under ``other``."""
    shown = list(keys[:SHOWN])
    mine, theirs = side.by_key(), other.by_key()
    why_not = {k: other.deferred[k] for k in shown if k in other.deferred}
    why_not |= {k: "handed off under both" for k in shown if k in other.handed}
    records = [r for k in shown if k not in theirs for r in mine[k].records]
    why_not |= _not_queued(other, records, owners, now)
    people = []
    for key in shown:
        q = mine[key]
        rep, why = side.handed[key]
        people.append(
            {
                "person_key": key,
                "name": q.name,
                "email": q.email,
                "rep": rep,
                "why_rep": why,
                "score": q.score,
                "definitions": list(q.definitions),
                f"under_{other.label}": why_not.get(key, ""),
            }
        )
    return {"count": len(keys), "people": people}


def _not_queued(
    side: Side, records: Sequence[tuple[str, str]], owners: Mapping[str, Any], now: datetime
) -> dict[str, str]:
    """Why the people of these records are not on ``side``'s queue (``handoff explain``'s words)."""
    if not records:
        return {}
    ctx = CycleContext(now=now, dry_run=True, owners=dict(owners))
    state = side.engine.state
    people = [p for crm in CRMS for p in state.people_by_ids(crm, [i for c, i in records if c == crm])]
    profiles = profiles_for(side.engine, ctx, people)
    out: dict[str, str] = {}
    for key in profiles:
        q = ctx.qualifications[key]
        if q.qualified:
            out[key] = (
                "sales-ready, but handed off before: a new handoff needs the rep's recycle and new behaviour"
            )
            continue
        hard = [b for b in q.blockers if not b.startswith("missing ")]
        why = "; ".join(hard) if hard else q.next_step
        out[key] = f"not sales-ready (score {q.score} of {side.mapping.sales_ready.threshold}): {why}"
    return out


# --- printing -------------------------------------------------------------------------


def print_simulation(data: Mapping[str, Any]) -> None:
    """The comparison, side by side, for a reader."""
    cur, new = data["current"], data["new"]
    print(f"handoff simulate: the next cycle under {new['config']} beside {cur['config']}")
    print(
        f"  on the state as of the last cycle ({data['last_cycle'] or 'none'}); no CRM called, nothing written"
    )
    print()
    rows = [
        ("threshold", "threshold"),
        ("sales-ready", "sales_ready"),
        ("handed off", "handed_off"),
        ("kept in nurture", "kept_in_nurture"),
        ("set aside", "set_aside"),
    ]
    print(f"  {'':24}{'current':>10}{'new':>10}")
    for label, key in rows:
        print(f"  {label:24}{cur[key]:>10}{new[key]:>10}")
    print()
    print(f"  {'per rep':40}{'current':>10}{'new':>10}{'change':>10}   left (current/new)")
    for rep, n in data["per_rep"].items():
        left = [s["capacity_per_rep"].get(rep, {}).get("left", "-") for s in (cur, new)]
        change = n["new"] - n["current"]
        print(f"  {rep:40}{n['current']:>10}{n['new']:>10}{change:>+10}   {left[0]}/{left[1]}")
    for title, part, other in (
        ("handed off only under the new mapping", "only_new", "under_current"),
        ("handed off only under the current mapping", "only_current", "under_new"),
    ):
        block = data[part]
        print()
        print(f"{title}: {block['count']}")
        for p in block["people"]:
            defs = f" by {', '.join(p['definitions'])}" if p["definitions"] else ""
            print(
                f"  {p['name']} <{p['email'] or 'no email'}> ({p['person_key']}) -> {p['rep']}: score {p['score']}{defs}"
            )
            print(f"      {other.replace('_', ' ')}: {p[other]}")
        if block["count"] > len(block["people"]):
            print(f"  ... and {block['count'] - len(block['people'])} more (--json lists {SHOWN})")
    if data["moved"]["count"]:
        print()
        print(f"handed off under both, to another rep: {data['moved']['count']}")
        for p in data["moved"]["people"]:
            print(f"  {p['person_key']}: {p['current']} -> {p['new']}")
    print()
    print(f"outside work: {data['outside_work']['source']}")
