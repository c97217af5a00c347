"""``handoff explain PERSON``: one person as the state holds them, and why (reads only).

Entry point: ``explain(state, mapping, ref, now) -> list[dict]`` (one explanation per
person the reference finds; JSON-able) and ``print_explanation``. The person is found by
email, HubSpot or Salesforce id, or person key, in the mirror; the profile is rebuilt with
the code a cycle evaluates with (``sync.evaluate.profiles_for``: merge, stages, field
values, every sales-ready definition's conditions). Then the queue row, each rep's
eligibility, availability and capacity (the last cycle's figures, else the ledger's), the
existing owner (the owners cache), the handoffs in the ledger and their outcomes are read.
No CRM is called: the state is as of the last cycle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.base import Connector
from crm_handoff.records import Owner, Person, normalize_email
from mappings.models import MappingSet, Rep
from sync.calendar import available
from sync.context import CycleContext
from sync.engine import Engine
from sync.evaluate import episode, owner_email, profiles_for
from sync.items import QueueItem
from sync.profiles import Profile
from sync.qualify import DefinitionCheck, Qualification, judge, matches
from sync.routing import Candidate, eligible, week_start
from sync.state import LedgerEntry, OutcomeRow, StateStore
from sync.summary import RepCapacity, RunSummary

CRM_PREFIXES = ("hubspot:", "salesforce:")


# --- finding the person -----------------------------------------------------------


def find_people(state: StateStore, ref: str) -> list[Person]:
    """The mirrored records ``ref`` names: an email, ``[hubspot:|salesforce:]ID`` or a person key."""
    ref = ref.strip()
    crm, _, bare = ref.partition(":") if ref.startswith(CRM_PREFIXES) else ("", "", ref)
    if "@" in bare:
        idents = state.identities_for([], [], [normalize_email(bare) or bare])
        ids: dict[str, set[str]] = {"hubspot": set(), "salesforce": set()}
    else:
        idents = state.identities_by_key([bare]) + state.identities_for(
            [bare] if crm in ("", "hubspot") else [], [bare] if crm in ("", "salesforce") else [], []
        )
        ids = {c: {bare} if crm in ("", c) else set() for c in ("hubspot", "salesforce")}
    for ident in idents:
        if ident.hubspot_id:
            ids["hubspot"].add(ident.hubspot_id)
        if ident.salesforce_id:
            ids["salesforce"].add(ident.salesforce_id)
    people = state.people_by_ids("hubspot", sorted(ids["hubspot"]))
    return people + state.people_by_ids("salesforce", sorted(ids["salesforce"]))


def refreshed(people: Sequence[Person], connectors: Mapping[str, Connector]) -> list[Person]:
    """The records as each CRM holds them now (``Connector.read_people``; one a CRM has no
    longer drops out); a CRM not configured keeps the mirror's copy."""
    out: list[Person] = []
    for crm in ("hubspot", "salesforce"):
        mine = [p for p in people if p.crm == crm]
        if mine and crm in connectors:
            out += [p for p in connectors[crm].read_people([p.id for p in mine]) if not p.deleted]
        else:
            out += mine
    return out


def cached_owners(state: StateStore) -> dict[str, list[Owner]]:
    """The owners and users each CRM had at the last cycle (the owners cache)."""
    out: dict[str, list[Owner]] = {}
    for crm in ("hubspot", "salesforce"):
        try:
            cached = json.loads(state.watermark(crm, "owners") or "{}")
        except ValueError:
            continue
        if cached.get("owners"):
            out[crm] = [Owner(crm, o["id"], o["email"], o["name"], o["active"]) for o in cached["owners"]]
    return out


def explain(
    state: StateStore,
    mapping: MappingSet,
    ref: str,
    now: datetime,
    connectors: Mapping[str, Connector] | None = None,
) -> list[dict[str, Any]]:
    """Explain every person ``ref`` finds (several when one email is several people).
    With ``connectors`` (``--refresh``) their records are read again from the CRMs first
    (batched, reads only); nothing is written anywhere."""
    people = find_people(state, ref)
    if not people:
        return []
    if connectors:
        people = refreshed(people, connectors)
    engine = Engine(mapping, state, {})
    ctx = CycleContext(now=now, dry_run=True)
    ctx.owners = cached_owners(state)
    profiles = profiles_for(engine, ctx, people)
    last = _last_cycle(state)
    return [_explain_one(engine, ctx, prof, last) for prof in profiles.values()]


def _last_cycle(state: StateStore) -> RunSummary | None:
    for row in state.recent_runs(20):
        run = RunSummary.from_json(row.get("summary"))
        if run.cycle is not None and not run.cycle.dry_run:
            return run
    return None


# --- one person -------------------------------------------------------------------


def _explain_one(engine: Engine, ctx: CycleContext, prof: Profile, last: RunSummary | None) -> dict[str, Any]:
    q, checks = judge(engine.mapping.sales_ready, prof.values, prof.stage, ctx.activities[prof.key], ctx.now)
    item = engine.state.queue_items([prof.key]).get(prof.key)
    handoffs = _handoffs(engine.state, ctx.ledger.get(prof.key, []))
    reps = _reps(engine, ctx, prof, last)
    return {
        "person_key": prof.key,
        "name": prof.name,
        "email": prof.email,
        "records": _records(ctx, prof),
        "profile": dict(sorted(prof.values.items())),
        "stage": prof.stage,
        "stages": {"hubspot": prof.hubspot_stage, "salesforce": prof.salesforce_stage},
        "score": q.score,
        "threshold": engine.mapping.sales_ready.threshold,
        "reasons": [{"rule": r.rule, "points": r.points, "detail": r.detail} for r in q.reasons],
        "sales_ready": q.qualified,
        "blockers": list(q.blockers),
        "definitions_met": list(q.definitions_met),
        "nearest": q.nearest,
        "missing": list(q.missing),
        "next_step": q.next_step,
        "definitions": _definitions(checks),
        "queue": _queue(item),
        "routing": {
            "decision": _decision(engine, ctx, prof, q, item, handoffs, reps),
            "owner": owner_email(ctx, prof),
            "reps": reps,
        },
        "handoffs": handoffs,
        "as_of": last.cycle.at if last and last.cycle else None,
    }


def _records(ctx: CycleContext, prof: Profile) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in (prof.hubspot, prof.salesforce):
        if p is not None:
            owner = ctx.owner_emails(p.crm).get(p.owner_id or "")
            out[p.crm] = {"id": p.id, "object_type": p.object_type, "owner": owner or p.owner_id}
    return out


def _definitions(checks: Sequence[DefinitionCheck]) -> list[dict[str, Any]]:
    return [
        {
            "name": d.name,
            "met": d.met,
            "conditions": [
                {"condition": c.condition, "met": c.met, "found": c.found, "missing": c.missing}
                for c in d.conditions
            ],
        }
        for d in checks
    ]


def _queue(item: QueueItem | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {
        "score": item.score,
        "queued_at": item.queued_at.isoformat(),
        "reason": item.reason,
        "status": item.status_written,
        "set_aside": item.snapshot.set_aside,
    }


def _handoffs(state: StateStore, entries: Sequence[LedgerEntry]) -> list[dict[str, Any]]:
    outcomes: dict[str, OutcomeRow] = {
        o.key: o for o in state.outcomes_for_people(list({e.person_key for e in entries}))
    }
    out = []
    for e in sorted(entries, key=lambda e: (e.episode, e.planned_at, e.crm)):
        o = outcomes.get(e.key)
        out.append(
            {
                "key": e.key,
                "episode": e.episode,
                "crm": e.crm,
                "rep": e.rep_email,
                "status": e.status,
                "task_id": e.task_id,
                "planned_at": e.planned_at.isoformat(),
                "open": e.status != "failed" and (o is None or o.is_open),
                "outcome": _outcome(o),
            }
        )
    return out


def _outcome(o: OutcomeRow | None) -> dict[str, Any] | None:
    if o is None:
        return None
    stamps = {"due_at": o.due_at, "first_touch_at": o.first_touch_at, "decided_at": o.decided_at}
    return {
        "state": o.state,
        "outcome": o.outcome,
        "reason": o.reason,
        "sla": o.sla,
        **{k: v.isoformat() if v else None for k, v in stamps.items()},
    }


# --- routing ----------------------------------------------------------------------


def _reps(engine: Engine, ctx: CycleContext, prof: Profile, last: RunSummary | None) -> list[dict[str, Any]]:
    """Each rep: may they take this person, can they receive tasks now, how full they are."""
    cfg = engine.mapping.reps
    cand = Candidate(prof.key, 0, prof.values, owner_email(ctx, prof))
    weeks = {r.email: week_start(ctx.now, r.timezone) for r in cfg.reps}
    used = engine.state.used_capacity(weeks)
    out = []
    for rep in cfg.reps:
        load = _load(rep, used.get(rep.email, 0), last, weeks[rep.email])
        ok = eligible(rep, cand, cfg.pools)
        out.append(
            {
                "rep": rep.email,
                "owner": rep.email == (cand.owner_email or "").lower(),  # keeps the lead while not full
                "eligible": ok,
                "why": "eligible" if ok else ineligible_why(rep, prof.values, engine.mapping),
                "unavailable": _unavailable(engine, ctx, rep, last),
                **load,
                "full": load["left"] <= 0,
            }
        )
    return out


def _load(rep: Rep, used: int, last: RunSummary | None, week: Any) -> dict[str, Any]:
    """The rep's capacity as the last cycle this week saw it (outside work included),
    else from the ledger: handoffs this week against the weekly capacity."""
    cycle = last.cycle if last else None
    seen: RepCapacity | None = cycle.capacity_per_rep.get(rep.email) if cycle else None
    if cycle is not None and seen is not None and _week_of(cycle.at, rep) == week:
        return {"capacity": seen.capacity, "used": seen.used_before + seen.assigned, "left": seen.left}
    return {"capacity": rep.weekly_capacity, "used": used, "left": rep.weekly_capacity - used}


def _week_of(at: str, rep: Rep) -> Any:
    try:
        return week_start(datetime.fromisoformat(at), rep.timezone)
    except ValueError:
        return None


def ineligible_why(rep: Rep, values: Mapping[str, str | None], mapping: MappingSet) -> str:
    """Why ``rep`` may not take a person with these values (``sync.routing.eligible``'s rules)."""
    if not rep.active:
        return "inactive in reps.yaml"
    if rep.weekly_capacity <= 0:
        return "no weekly capacity (weekly_followup_minutes below minutes_per_lead)"
    country = (values.get("country") or "").strip()
    if rep.territories and country.lower() not in {t.lower() for t in rep.territories}:
        return f"territory: country {country or '(blank)'} is not in {', '.join(rep.territories)}"
    pools = sorted(p.name for p in mapping.reps.pools if matches(p, values)[0])
    mine = ", ".join(rep.pools) or "none"
    return f"pool: the person is in {', '.join(pools) or 'no pool'}, the rep in {mine}"


def _unavailable(engine: Engine, ctx: CycleContext, rep: Rep, last: RunSummary | None) -> str | None:
    """Why the rep cannot receive tasks now (as ``sync.plan.available_reps`` says), or None."""
    if not available(engine.mapping.reps.schedule_for(rep), ctx.now):
        return "not available now (working hours, out of office or a holiday in reps.yaml)"
    where = engine.mapping.handoff.task_in
    crms = ("hubspot", "salesforce") if where == "both" else (rep.works_in if where == "rep_crm" else where,)
    gaps = [c for c in crms if c in ctx.owners and rep.email not in ctx.owner_ids(c)]
    if gaps:
        return f"no active {' or '.join(gaps)} user with this email"
    cycle = last.cycle if last else None
    return cycle.unavailable_reps.get(rep.email) if cycle else None


def _decision(
    engine: Engine,
    ctx: CycleContext,
    prof: Profile,
    q: Qualification,
    item: QueueItem | None,
    handoffs: Sequence[Mapping[str, Any]],
    reps: Sequence[Mapping[str, Any]],
) -> str:
    """What the cycle did with this person, and why, in one sentence."""
    open_ = [h for h in handoffs if h["open"]]
    if open_:
        h = open_[-1]
        return (
            f"handed off to {h['rep']} (episode {h['episode']}, {h['planned_at'][:10]}, task in {h['crm']})"
        )
    if item is not None:
        return _waiting(item, reps)
    if q.qualified:
        if not episode(engine, ctx, prof)[1]:
            return (
                "sales-ready, but handed off before: a new handoff needs the rep's recycle and new behaviour"
            )
        return "sales-ready: the next cycle queues and routes this person"
    why = "; ".join(q.blockers) if any(not b.startswith("missing ") for b in q.blockers) else q.next_step
    return f"not sales-ready: {why}"


def _waiting(item: QueueItem, reps: Sequence[Mapping[str, Any]]) -> str:
    """Why a queued person is kept in nurture: which reps are full, or why none is eligible."""
    if item.snapshot.set_aside:
        return item.snapshot.set_aside
    # the existing owner keeps the lead while active and not full, eligible or not (sync.routing)
    fits = [r for r in reps if r["eligible"] or (r["owner"] and r["why"] != "inactive in reps.yaml")]
    if not fits:
        whys = "; ".join(f"{r['rep']}: {r['why']}" for r in reps)
        return f"kept in nurture: no eligible rep ({whys})"
    ready = [r for r in fits if not r["unavailable"]]
    if not ready:
        whys = "; ".join(f"{_who(r)}: {r['unavailable']}" for r in fits)
        return f"kept in nurture: no eligible rep can receive tasks now ({whys})"
    full = [r for r in ready if r["full"]]
    if len(full) == len(ready):
        whys = "; ".join(f"{_who(r)} is full ({r['used']} of {r['capacity']} this week)" for r in full)
        return f"kept in nurture: every eligible rep is at weekly capacity ({whys})"
    room = ", ".join(f"{_who(r)} ({r['left']} left)" for r in ready if not r["full"])
    last = f"; last cycle: {item.reason}" if item.status_written else ""
    return f"on the queue: eligible reps with room: {room}; routed by score at the next cycle{last}"


def _who(rep: Mapping[str, Any]) -> str:
    return f"{rep['rep']} (the existing owner)" if rep["owner"] else str(rep["rep"])


# --- printing ---------------------------------------------------------------------


def print_explanation(data: Mapping[str, Any]) -> None:
    """The explanation for a person, for a reader."""
    print(f"{data['name']} <{data['email'] or 'no email'}> ({data['person_key']})")
    for crm, rec in data["records"].items():
        stage = data["stages"].get(crm)
        print(f"  {crm}: {rec['object_type']} {rec['id']}, stage {stage or '-'}, owner {rec['owner'] or '-'}")
    print(f"  stage: {data['stage'] or '-'}; score {data['score']} (threshold {data['threshold']})")
    for r in data["reasons"]:
        print(f"    +{r['points']} {r['rule']}" + (f": {r['detail']}" if r["detail"] else ""))
    profile = ", ".join(f"{k}={v}" for k, v in data["profile"].items() if v)
    print(f"  profile: {profile or '(empty)'}")
    print()
    verdict = "sales-ready" if data["sales_ready"] else "not sales-ready"
    print(f"{verdict}" + (f" ({'; '.join(data['blockers'])})" if data["blockers"] else ""))
    for d in data["definitions"]:
        print(f"  [{'x' if d['met'] else ' '}] {d['name']}")
        for c in d["conditions"]:
            tail = f" - {c['found']}" if c["met"] else f" - missing: {c['missing']} (has {c['found']})"
            print(f"      {'ok ' if c['met'] else 'no '} {c['condition']}{tail}")
    if data["nearest"]:
        print(f"  nearest: {data['nearest']}: {'; '.join(data['missing'])}")
    _print_routing(data)


def _print_routing(data: Mapping[str, Any]) -> None:
    routing = data["routing"]
    print()
    print(f"routing: {routing['decision']}")
    if routing["owner"]:
        print(f"  existing owner: {routing['owner']}")
    for r in routing["reps"]:
        state = ("eligible" if r["eligible"] else f"not eligible: {r['why']}") + (
            " (the existing owner)" if r["owner"] else ""
        )
        extra = f"; {r['unavailable']}" if r["unavailable"] else ""
        print(f"  {r['rep']}: {state}; {r['used']} of {r['capacity']} used this week{extra}")
    if data["queue"]:
        qd = data["queue"]
        print(f"  on the queue since {qd['queued_at'][:16]} (score {qd['score']}): {qd['reason']}")
    print()
    print("handoffs:" if data["handoffs"] else "handoffs: none")
    for h in data["handoffs"]:
        o = h["outcome"] or {}
        detail = f"outcome {o.get('outcome') or '-'}, {o.get('state')}" if o else "no outcome yet"
        print(f"  {h['key']} {h['crm']} -> {h['rep']} ({h['status']}, {h['planned_at'][:10]}): {detail}")
    if data["as_of"]:
        print(f"\nas of the last cycle ({data['as_of']}); no CRM was called")
