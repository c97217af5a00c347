"""One cycle's working values, shared by its stages: the context and the plan's records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from crm_handoff.errors import StopRequested
from crm_handoff.records import Activity, Owner, Reason
from mappings.models import Rep
from sync.brief import Brief
from sync.items import QueueItem
from sync.profiles import Profile
from sync.pulls import PeoplePull
from sync.qualify import Qualification
from sync.state import LedgerEntry, OutcomeRow
from sync.summary import HandoffSummary, RepCapacity

log = structlog.get_logger("handoff.cycle")

CHUNK = 1000  # people evaluated (and checkpointed) together
KEEP_PROFILES = 1000  # candidate profiles kept in memory; others are reloaded from the mirror
PLAN_BATCH = 1000  # handoffs planned and executed together
NURTURE_SHOWN = 200  # deferred people listed by name in the summary (all are counted)
PLAN_SHOWN = 1000  # handoffs listed in the summary's plan (all are counted, per rep)


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

    def summary(self) -> HandoffSummary:
        """What the cycle reports about this handoff, without the profile and the brief."""
        return HandoffSummary(
            person=self.profile.name,
            person_key=self.profile.key,
            score=self.qualification.score,
            rep=self.rep.email,
            why_rep=self.why,
            task_in=list(self.task_crms),
            reasons=reasons_json(self.qualification.reasons),
            definitions=list(self.qualification.definitions_met),
        )


@dataclass(frozen=True)
class NurtureItem:
    """A queued person the plan did not hand off this cycle, and why."""

    person_key: str
    name: str
    score: int
    reason: str


@dataclass
class HandoffPlan:
    """Everything the cycle did (or, dry-run, would do); printed by --dry-run.

    Its size does not grow with the queue: handoffs are counted per rep and the deferred
    people by reason; only the first ``PLAN_SHOWN`` handoffs and ``NURTURE_SHOWN`` deferred
    people are kept by name.
    """

    handoffs: list[HandoffSummary] = field(default_factory=list)  # the first PLAN_SHOWN
    handed_off: int = 0
    from_nurture: int = 0  # of those, people who had waited in nurture since an earlier cycle
    per_rep: Counter[str] = field(default_factory=Counter)
    nurture: list[NurtureItem] = field(default_factory=list)
    nurture_reasons: Counter[str] = field(default_factory=Counter)
    capacity: dict[str, RepCapacity] = field(default_factory=dict)
    unavailable_reps: dict[str, str] = field(default_factory=dict)

    def hand_off(self, item: HandoffSummary) -> None:
        """Count a planned (and, unless a dry run, executed) handoff."""
        self.handed_off += 1
        self.per_rep[item.rep] += 1
        if len(self.handoffs) < PLAN_SHOWN:
            self.handoffs.append(item)

    def defer(self, item: NurtureItem) -> None:
        """Count a deferred person (and keep the first ones by name)."""
        self.nurture_reasons[item.reason] += 1
        if len(self.nurture) < NURTURE_SHOWN:
            self.nurture.append(item)


@dataclass
class CycleContext:
    """What one cycle gathered, shared by its stages."""

    now: datetime
    dry_run: bool
    run_id: int | None = None
    owners: dict[str, list[Owner]] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    activities: dict[str, list[Activity]] = field(default_factory=dict)
    qualifications: dict[str, Qualification] = field(default_factory=dict)
    ledger: dict[str, list[LedgerEntry]] = field(default_factory=dict)
    outcomes: dict[str, list[OutcomeRow]] = field(default_factory=dict)  # per person (sync.followup)
    pulled: Counter[str] = field(default_factory=Counter)
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    scored: int = 0  # profile evaluations (a person in both CRMs may be scored twice)
    qualified: set[str] = field(default_factory=set)  # sales-ready people seen this cycle
    new_activities: int = 0
    pulled_activities: int = 0
    fresh_activities: list[Activity] = field(default_factory=list)  # dry-run: not in the state
    marks: set[tuple[str, str]] = field(default_factory=set)  # dry-run: marks not in the state
    queue_overlay: dict[str, QueueItem | None] = field(default_factory=dict)  # dry-run queue changes
    pulls: dict[str, PeoplePull] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    stopped: str | None = None
    should_stop: Callable[[], str | None] | None = None

    def checkpoint(self) -> None:
        """A safe point: stop here (StopRequested) when asked to."""
        reason = self.should_stop() if self.should_stop else None
        if reason:
            raise StopRequested(reason)

    def count(self, what: str, crm: str, n: int = 1) -> None:
        """Add ``n`` to a per-CRM counter of the summary."""
        self.counts.setdefault(what, Counter())[crm] += n

    def owner_ids(self, crm: str) -> dict[str, str]:
        """Active owner/user id by lower-case email."""
        return {o.email.lower(): o.id for o in self.owners.get(crm, []) if o.active}

    def owner_emails(self, crm: str) -> dict[str, str]:
        """Lower-case email by owner/user id (active or not)."""
        return {o.id: o.email.lower() for o in self.owners.get(crm, [])}

    def forget(self, keys: list[str] | tuple[str, ...]) -> None:
        """Drop per-person data of these people (keeps memory flat)."""
        for key in keys:
            self.profiles.pop(key, None)
            self.activities.pop(key, None)
            self.qualifications.pop(key, None)
            self.ledger.pop(key, None)
            self.outcomes.pop(key, None)


def reasons_json(reasons: tuple[Reason, ...] | list[Reason]) -> list[dict[str, Any]]:
    """Qualification reasons as the summary and the ledger store them."""
    return [{"rule": r.rule, "points": r.points, "detail": r.detail} for r in reasons]


def record_error(state: Any, ctx: CycleContext, crm: str, record: str, reason: str) -> None:
    """A record the cycle could not handle: in the summary, the state and the log."""
    ctx.errors.append({"crm": crm, "record": record, "reason": reason})
    if not ctx.dry_run:
        state.record_error(ctx.run_id, crm, record, reason, ctx.now)
    log.warning("record_failed", crm=crm, record=record, reason=reason)
