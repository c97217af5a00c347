"""Capacity-aware routing: who goes to which rep this week, who waits in nurture (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from mappings.models import Pool, Rep
from sync.qualify import matches

RAN_OUT = "rep capacity"


@dataclass(frozen=True)
class Candidate:
    """A sales-ready person waiting for a rep."""

    person_key: str
    score: int
    values: Mapping[str, str | None]
    owner_email: str | None = None
    qualified_at: datetime | None = None


@dataclass(frozen=True)
class Assignment:
    candidate: Candidate
    rep: Rep
    why: str


@dataclass(frozen=True)
class Deferral:
    candidate: Candidate
    reason: str


@dataclass(frozen=True)
class RepLoad:
    rep: Rep
    capacity: int
    used_before: int
    assigned: int = 0

    @property
    def left(self) -> int:
        return self.capacity - self.used_before - self.assigned


@dataclass(frozen=True)
class RoutingPlan:
    assignments: tuple[Assignment, ...]
    deferrals: tuple[Deferral, ...]
    loads: Mapping[str, RepLoad] = field(default_factory=dict)


def week_start(now: datetime, tz: str) -> date:
    """The Monday that starts ``now``'s week in time zone ``tz``."""
    local = now.astimezone(ZoneInfo(tz)).date()
    return local - timedelta(days=local.weekday())


def outside_load(rep: Rep, items: int, minutes_each: int | None = None) -> int:
    """Leads' worth of ``rep``'s weekly capacity that ``items`` open outside items take.

    Each item counts as one lead, or, with ``minutes_each``, takes that many of the rep's
    weekly follow-up minutes: what is left still holds floor(left / minutes per lead).
    Never more than the capacity.
    """
    cap = rep.weekly_capacity
    if minutes_each is None:
        return min(max(0, items), cap)
    left = max(0, rep.weekly_followup_minutes - max(0, items) * minutes_each)
    return cap - min(cap, math.floor(left / rep.minutes_per_lead))


def outside_enough(rep: Rep, minutes_each: int | None = None) -> int:
    """Open outside items past which ``rep`` has no capacity left (counting may stop there)."""
    if minutes_each is None:
        return rep.weekly_capacity
    return math.ceil(rep.weekly_followup_minutes / minutes_each)


def _pools_of(values: Mapping[str, str | None], pools: Sequence[Pool]) -> set[str]:
    return {p.name for p in pools if matches(p, values)[0]}


def eligible(rep: Rep, cand: Candidate, pools: Sequence[Pool]) -> bool:
    """May ``rep`` take ``cand`` (active, territory and pool match)?"""
    if not rep.active or rep.weekly_capacity <= 0:
        return False
    country = (cand.values.get("country") or "").strip().lower()
    if rep.territories and country not in {t.lower() for t in rep.territories}:
        return False
    lead_pools = _pools_of(cand.values, pools)
    if rep.pools or lead_pools:
        return bool(set(rep.pools) & lead_pools)
    return True


def _order(c: Candidate) -> tuple[int, str, str]:
    at = c.qualified_at.isoformat() if c.qualified_at else ""
    return (-c.score, at, c.person_key)


class Router:
    """Routes candidates page by page, highest score first, never above any rep's weekly
    capacity; the loads carry over between pages, so a queue of any size is routed
    with one page in memory (``plan_routing`` routes one list)."""

    def __init__(self, reps: Sequence[Rep], used: Mapping[str, int], pools: Sequence[Pool] = ()) -> None:
        self.loads: dict[str, RepLoad] = {
            r.email: RepLoad(r, r.weekly_capacity, used.get(r.email, 0)) for r in reps
        }
        self.pools = pools

    def route(self, candidates: Sequence[Candidate]) -> tuple[list[Assignment], list[Deferral]]:
        """Assign these candidates (in queue order) or defer them with the reason.

        The existing owner keeps the lead when they are a rep with capacity left;
        otherwise the eligible rep with most capacity left takes it (ties: fewest
        assigned, then name).
        """
        assignments: list[Assignment] = []
        deferrals: list[Deferral] = []
        for cand in sorted(candidates, key=_order):
            pick = _pick(cand, self.loads, self.pools)
            if pick is None:
                deferrals.append(Deferral(cand, _why_not(cand, self.loads, self.pools)))
                continue
            load, why = pick
            self.loads[load.rep.email] = RepLoad(load.rep, load.capacity, load.used_before, load.assigned + 1)
            assignments.append(Assignment(cand, load.rep, why))
        return assignments, deferrals

    def route_one(self, cand: Candidate, exclude: set[str]) -> Assignment | None:
        """Assign one candidate to the eligible rep with most capacity left, never one of
        ``exclude`` (emails) - for reassignments; None when no such rep has room."""
        loads = {e: ld for e, ld in self.loads.items() if e not in exclude}
        options = [ld for ld in loads.values() if ld.left > 0 and eligible(ld.rep, cand, self.pools)]
        if not options:
            return None
        load = min(options, key=lambda ld: (-ld.left, ld.assigned, ld.rep.name))
        self.loads[load.rep.email] = RepLoad(load.rep, load.capacity, load.used_before, load.assigned + 1)
        return Assignment(cand, load.rep, "next eligible rep with capacity")


def plan_routing(
    candidates: Sequence[Candidate],
    reps: Sequence[Rep],
    used: Mapping[str, int],
    pools: Sequence[Pool] = (),
) -> RoutingPlan:
    """Assign candidates, highest score first, never above any rep's weekly capacity
    (``Router``); everyone else is deferred with the reason."""
    router = Router(reps, used, pools)
    assignments, deferrals = router.route(candidates)
    return RoutingPlan(tuple(assignments), tuple(deferrals), router.loads)


def _pick(cand: Candidate, loads: Mapping[str, RepLoad], pools: Sequence[Pool]) -> tuple[RepLoad, str] | None:
    owner = loads.get((cand.owner_email or "").lower())
    if owner and owner.rep.active and owner.left > 0:
        return owner, "existing owner"
    options = [ld for ld in loads.values() if ld.left > 0 and eligible(ld.rep, cand, pools)]
    if not options:
        return None
    best = min(options, key=lambda ld: (-ld.left, ld.assigned, ld.rep.name))
    return best, "most capacity left"


def _why_not(cand: Candidate, loads: Mapping[str, RepLoad], pools: Sequence[Pool]) -> str:
    if any(eligible(ld.rep, cand, pools) for ld in loads.values()):
        return f"{RAN_OUT}: every eligible rep is at weekly capacity"
    return "no eligible rep (territory, pool or inactive)"
