"""One handoff cycle: pull -> merge -> stage -> qualify -> plan -> execute -> record.

The engine orchestrates; the decisions are made by pure functions (``profiles``,
``qualify``, ``routing``, ``brief``) and all writes happen in ``execute``. With
``dry_run`` the cycle stops after the plan and writes nothing anywhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from connectors.base import Connector
from mappings.models import MappingSet, Rep
from sync.brief import Brief, build_brief
from sync.profiles import IdentityIndex, Profile, group_people, resolve
from sync.qualify import Qualification, Reason, qualify
from sync.records import Activity, Owner, Person
from sync.routing import Candidate, RoutingPlan, plan_routing, week_start
from sync.state import LedgerEntry, StateStore

log = structlog.get_logger("handoff.engine")

DEFAULT_LOOKBACK = timedelta(minutes=5)


@dataclass(frozen=True)
class PlannedHandoff:
    """A handoff the plan decided: a person, a rep, the brief, where the task goes."""

    key: str
    episode: int
    profile: Profile
    rep: Rep
    why: str
    qualification: Qualification
    brief: Brief
    task_crms: tuple[str, ...]


@dataclass(frozen=True)
class NurtureItem:
    person_key: str
    name: str
    score: int
    reason: str


@dataclass
class HandoffPlan:
    """Everything the cycle will do; printed by --dry-run."""

    handoffs: list[PlannedHandoff] = field(default_factory=list)
    nurture: list[NurtureItem] = field(default_factory=list)
    capacity: dict[str, dict[str, int]] = field(default_factory=dict)
    unavailable_reps: dict[str, str] = field(default_factory=dict)


@dataclass
class CycleContext:
    """What one cycle gathered, shared by the plan and the execute steps."""

    now: datetime
    mapping: MappingSet
    connectors: Mapping[str, Connector]
    owners: dict[str, list[Owner]] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    activities: dict[str, list[Activity]] = field(default_factory=dict)
    qualifications: dict[str, Qualification] = field(default_factory=dict)
    ledger: dict[str, list[LedgerEntry]] = field(default_factory=dict)
    pulled: Counter[str] = field(default_factory=Counter)
    watermarks: dict[tuple[str, str], str] = field(default_factory=dict)
    index: IdentityIndex = field(default_factory=lambda: IdentityIndex(()))
    new_activities: int = 0
    fresh_activities: list[Activity] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def owner_ids(self, crm: str) -> dict[str, str]:
        """Active owner/user id by lower-case email."""
        return {o.email.lower(): o.id for o in self.owners.get(crm, []) if o.active}

    def owner_emails(self, crm: str) -> dict[str, str]:
        return {o.id: o.email.lower() for o in self.owners.get(crm, [])}


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _episode_key(person_key: str, episode: int) -> str:
    """The handoff key: lower-case (HubSpot matches IN filters on lower-case text).

    Salesforce 18-character ids are unique regardless of case, so lowering is safe.
    """
    return f"{person_key.lower()}#{episode}"


class Engine:
    """Runs handoff cycles against a set of connectors and a state store."""

    def __init__(
        self,
        mapping: MappingSet,
        state: StateStore,
        connectors: Mapping[str, Connector],
        lookback: timedelta = DEFAULT_LOOKBACK,
    ) -> None:
        self.mapping = mapping
        self.state = state
        self.connectors = connectors
        self.lookback = lookback

    # --- gather ---------------------------------------------------------------
    def gather(self, now: datetime) -> CycleContext:
        """Pull owners, changed people and activities; build and score profiles."""
        ctx = CycleContext(now=now, mapping=self.mapping, connectors=self.connectors)
        for crm, conn in self.connectors.items():
            ctx.owners[crm] = conn.pull_owners()
        people = self._pull_people(ctx)
        touched = self._pull_activities(ctx)
        known = self.state.identities_for(
            [p.id for p in people if p.crm == "hubspot"],
            [p.id for p in people if p.crm == "salesforce"],
            [p.email for p in people if p.email] + touched["email"],
        )
        known += self.state.identities_for(touched["hubspot"], touched["salesforce"], [])
        ctx.index = IdentityIndex(known)
        people += self._read_missing(ctx, people, touched)
        ctx.profiles = group_people(people, ctx.index)
        self._score(ctx)
        return ctx

    def _pull_people(self, ctx: CycleContext) -> list[Person]:
        latest: dict[tuple[str, str], Person] = {}
        for crm, conn in self.connectors.items():
            mark = _parse_ts(self.state.watermark(crm, "people"))
            since = mark - self.lookback if mark else None
            newest = mark
            for person in conn.pull_people(since):
                ctx.pulled[crm] += 1
                latest[(crm, person.id)] = person
                newest = max(newest or person.modified_at, person.modified_at)
            if newest:  # never past the start of this cycle: changes made meanwhile come next
                ctx.watermarks[(crm, "people")] = min(newest, ctx.now).isoformat()
        return [p for p in latest.values() if not p.deleted]

    def _pull_activities(self, ctx: CycleContext) -> dict[str, list[str]]:
        window = ctx.now - timedelta(days=self.mapping.sales_ready.longest_window_days)
        touched: dict[str, list[str]] = {"hubspot": [], "salesforce": [], "email": []}
        for crm, conn in self.connectors.items():
            mark = _parse_ts(self.state.watermark(crm, "activities"))
            since = max(mark - self.lookback, window) if mark else window
            batch = list(conn.pull_activities(since))
            ctx.fresh_activities += batch
            for act in batch:
                if act.person_id:
                    touched[crm].append(act.person_id)
                elif act.email:
                    touched["email"].append(act.email.lower())
            ctx.watermarks[(crm, "activities")] = ctx.now.isoformat()
        return touched

    def _read_missing(
        self, ctx: CycleContext, people: Sequence[Person], touched: dict[str, list[str]]
    ) -> list[Person]:
        """Read records we need but did not pull: active people and counterparts."""
        have: set[Any] = {(p.crm, p.id) for p in people}
        want: dict[tuple[str, str], set[str]] = {}
        for crm in ("hubspot", "salesforce"):
            for pid in touched[crm]:
                if (crm, pid) not in have:
                    sf_type = self._sf_type(ctx, pid) if crm == "salesforce" else "contact"
                    want.setdefault((crm, sf_type), set()).add(pid)
        for email in touched["email"]:
            self._want_identity(ctx, ctx.index.by_email.get(email), have, want)
        for p in people:
            self._want_identity(ctx, ctx.index.key_for(p), have, want)
            linked = p.linked_id
            if (
                linked
                and p.crm == "hubspot"
                and ("salesforce", linked) not in have
                and linked not in ctx.index.by_sf
            ):
                want.setdefault(("salesforce", "lead"), set()).add(linked)
            if p.converted_to and ("salesforce", p.converted_to) not in have:
                want.setdefault(("salesforce", "contact"), set()).add(p.converted_to)
        out: list[Person] = []
        for (crm, object_type), ids in want.items():
            if crm in self.connectors and ids:
                out += self.connectors[crm].read_people(sorted(ids), object_type)
        return [p for p in out if not p.deleted]

    def _sf_type(self, ctx: CycleContext, sf_id: str) -> str:
        key = ctx.index.by_sf.get(sf_id)
        ident = ctx.index.by_key.get(key) if key else None
        if ident and ident.salesforce_type:
            return ident.salesforce_type
        return "contact" if sf_id.startswith("003") else "lead"

    def _want_identity(
        self,
        ctx: CycleContext,
        key: str | None,
        have: set[Any],
        want: dict[tuple[str, str], set[str]],
    ) -> None:
        ident = ctx.index.by_key.get(key) if key else None
        if ident is None:
            return
        if ident.hubspot_id and ("hubspot", ident.hubspot_id) not in have:
            want.setdefault(("hubspot", "contact"), set()).add(ident.hubspot_id)
        if ident.salesforce_id and ("salesforce", ident.salesforce_id) not in have:
            want.setdefault(("salesforce", ident.salesforce_type or "lead"), set()).add(ident.salesforce_id)

    def _score(self, ctx: CycleContext) -> None:
        keys = list(ctx.profiles)
        last = self.state.field_values(keys)
        window = ctx.now - timedelta(days=self.mapping.sales_ready.longest_window_days)
        for key, prof in ctx.profiles.items():
            resolve(prof, self.mapping, last.get(key, {}))
        ids = [i for p in ctx.profiles.values() for i in p.crm_ids()]
        emails = [p.email for p in ctx.profiles.values() if p.email]
        acts = self.state.activities_for(ids, emails, window) if ctx.profiles else []
        acts += [a for a in ctx.fresh_activities if a.occurred_at >= window]
        by_ref: dict[str, list[Activity]] = {}
        for act in acts:
            for ref in (act.person_id, act.email):
                if ref:
                    by_ref.setdefault(ref, []).append(act)
        for key, prof in ctx.profiles.items():
            mine = {
                (a.crm, a.id): a for ref in [*prof.crm_ids(), prof.email or ""] for a in by_ref.get(ref, [])
            }
            ctx.activities[key] = list(mine.values())
            ctx.qualifications[key] = qualify(
                self.mapping.sales_ready, prof.values, prof.stage, ctx.activities[key], ctx.now
            )
        for entry in self.state.ledger_for_people(keys):
            ctx.ledger.setdefault(entry.person_key, []).append(entry)

    # --- plan -----------------------------------------------------------------
    def episode(self, ctx: CycleContext, key: str) -> tuple[int, bool]:
        """(episode for a new handoff, whether the person may be handed off now)."""
        entries = [e for e in ctx.ledger.get(key, []) if e.status != "failed"]
        if not entries:
            return 1, True
        latest = max(e.episode for e in entries)
        recycled = ctx.profiles[key].stage in self.mapping.lifecycle.side_stages
        done = all(e.status == "done" for e in entries if e.episode == latest)
        return (latest + 1, True) if (done and recycled) else (latest, False)

    def available_reps(self, ctx: CycleContext) -> tuple[list[Rep], dict[str, str]]:
        """Reps who can receive tasks now, and why the others cannot."""
        ok: list[Rep] = []
        missing: dict[str, str] = {}
        for rep in self.mapping.reps.reps:
            if not rep.active:
                missing[rep.email] = "inactive in reps.yaml"
                continue
            gaps = [crm for crm in self.task_crms(rep) if rep.email not in ctx.owner_ids(crm)]
            if gaps:
                missing[rep.email] = f"no active {' or '.join(gaps)} user with this email"
            else:
                ok.append(rep)
        return ok, missing

    def task_crms(self, rep: Rep) -> tuple[str, ...]:
        where = self.mapping.handoff.task_in
        crms = (
            ("hubspot", "salesforce") if where == "both" else (rep.works_in if where == "rep_crm" else where,)
        )
        return tuple(c for c in crms if c in self.connectors)

    def candidates(self, ctx: CycleContext) -> list[Candidate]:
        """Sales-ready people of this cycle plus those still waiting from earlier ones."""
        out: dict[str, Candidate] = {}
        for key, q in ctx.qualifications.items():
            if q.qualified and self.episode(ctx, key)[1]:
                prof = ctx.profiles[key]
                out[key] = Candidate(key, q.score, dict(prof.values), self._owner_email(ctx, prof), ctx.now)
        for row in self.state.queued():
            key = row["person_key"]
            if key in ctx.profiles:
                continue  # re-scored above from fresh data
            snap = row["snapshot"]
            out[key] = Candidate(
                key, int(row["score"]), snap.get("values", {}), snap.get("owner_email"), row["queued_at"]
            )
        return list(out.values())

    def _owner_email(self, ctx: CycleContext, prof: Profile) -> str | None:
        for person in (prof.salesforce, prof.hubspot):
            if person and person.owner_id:
                email = ctx.owner_emails(person.crm).get(person.owner_id)
                if email:
                    return email
        return None

    def plan(self, ctx: CycleContext) -> tuple[HandoffPlan, RoutingPlan]:
        """Route the candidates within this week's capacity; render each brief."""
        reps, unavailable = self.available_reps(ctx)
        weeks = {r.email: week_start(ctx.now, r.timezone) for r in self.mapping.reps.reps}
        used = self.state.used_capacity(weeks)
        routing = plan_routing(self.candidates(ctx), reps, used, self.mapping.reps.pools)
        plan = HandoffPlan(unavailable_reps=unavailable)
        for email, load in routing.loads.items():
            plan.capacity[email] = {
                "capacity": load.capacity,
                "used_before": load.used_before,
                "assigned": load.assigned,
                "left": load.left,
            }
        for d in routing.deferrals:
            name = (
                ctx.profiles[d.candidate.person_key].name
                if d.candidate.person_key in ctx.profiles
                else d.candidate.person_key
            )
            plan.nurture.append(NurtureItem(d.candidate.person_key, name, d.candidate.score, d.reason))
        return plan, routing

    def brief_for(self, ctx: CycleContext, key: str, rep: Rep) -> Brief:
        prof, q = ctx.profiles[key], ctx.qualifications[key]
        return build_brief(
            self.mapping.handoff,
            self.mapping.sales_ready.threshold,
            prof.values,
            prof.stage,
            q.score,
            q.reasons,
            ctx.activities.get(key, []),
            {"name": rep.name, "email": rep.email},
            ctx.now,
        )

    def planned_handoff(self, ctx: CycleContext, key: str, rep: Rep, why: str) -> PlannedHandoff:
        episode, _ = self.episode(ctx, key)
        return PlannedHandoff(
            key=_episode_key(key, episode),
            episode=episode,
            profile=ctx.profiles[key],
            rep=rep,
            why=why,
            qualification=ctx.qualifications[key],
            brief=self.brief_for(ctx, key, rep),
            task_crms=self.task_crms(rep),
        )

    def refresh_queued(self, ctx: CycleContext, keys: Sequence[str]) -> None:
        """Load current records for queued people the plan picked, and re-score them."""
        idents = self.state.identities_by_key([k for k in keys if k not in ctx.profiles])
        if not idents:
            return
        for ident in idents:
            ctx.index.add(ident)
        want: dict[tuple[str, str], list[str]] = {}
        for ident in idents:
            if ident.hubspot_id:
                want.setdefault(("hubspot", "contact"), []).append(ident.hubspot_id)
            if ident.salesforce_id:
                want.setdefault(("salesforce", ident.salesforce_type or "lead"), []).append(
                    ident.salesforce_id
                )
        people: list[Person] = []
        for (crm, object_type), ids in want.items():
            if crm in self.connectors:
                people += [p for p in self.connectors[crm].read_people(ids, object_type) if not p.deleted]
        fresh = group_people(people, ctx.index)
        before = set(ctx.profiles)
        ctx.profiles.update({k: v for k, v in fresh.items() if k not in before})
        last = self.state.field_values(list(fresh))
        window = ctx.now - timedelta(days=self.mapping.sales_ready.longest_window_days)
        for key, prof in fresh.items():
            if key in before:
                continue
            resolve(prof, self.mapping, last.get(key, {}))
            acts = self.state.activities_for(prof.crm_ids(), [prof.email] if prof.email else [], window)
            ctx.activities[key] = acts
            ctx.qualifications[key] = qualify(
                self.mapping.sales_ready, prof.values, prof.stage, acts, ctx.now
            )
        for entry in self.state.ledger_for_people(list(fresh)):
            ctx.ledger.setdefault(entry.person_key, []).append(entry)


def reasons_json(reasons: Sequence[Reason]) -> list[dict[str, Any]]:
    return [{"rule": r.rule, "points": r.points, "detail": r.detail} for r in reasons]


def utcnow() -> datetime:
    return datetime.now(UTC)
