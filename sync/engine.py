"""Gathering and planning: pull -> merge -> stage -> qualify -> queue -> plan.

People are pulled page by page and processed in chunks, so memory stays flat as the
CRM grows: each chunk is merged with what the state store's mirror holds of the other
CRM (no extra API calls), scored, its field sync written, and every sales-ready person
put on the queue; then the pull checkpoint is saved, so an interrupted pass resumes
after its last chunk. The plan routes the whole queue. With ``dry_run`` nothing is
written anywhere: writes are skipped and the queue lives in memory.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from more_itertools import chunked

from connectors.base import Connector
from crm_handoff.clock import Clock, utc_now
from crm_handoff.errors import StopRequested
from crm_handoff.records import Activity, Owner, PeoplePage, Person, Reason, normalize_email
from mappings.context import rep_view
from mappings.models import MappingSet, Rep
from sync.brief import Brief, build_brief
from sync.outside import add_outside_work
from sync.profiles import IdentityIndex, Profile, group_people, resolve
from sync.qualify import Qualification, qualify
from sync.routing import Candidate, Deferral, RoutingPlan, plan_routing, week_start
from sync.setaside import QueuedPerson, SetAside, missing_email, set_aside
from sync.state import LedgerEntry, StateStore

log = structlog.get_logger("handoff.engine")

DEFAULT_LOOKBACK = timedelta(minutes=1)  # people: search-index lag and clock skew, not the interval
DEFAULT_ACTIVITY_LOOKBACK = timedelta(minutes=5)  # activity: events are ingested later than they occur
LATE_EVERY = timedelta(hours=1)  # activity read by occurrence time: its late window, once an hour
CHUNK = 1000  # people processed (and checkpointed) together
KEEP_PROFILES = 1000  # candidate profiles kept in memory; others are reloaded from the mirror
PLAN_BATCH = 1000  # handoffs planned and executed together
AHEAD = 3000  # people a CRM's pull may fetch ahead of processing (on its own thread)
ACTIVITY_BATCH = 5000  # pulled activities saved together
OWNERS_TTL = timedelta(hours=1)


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
        )


@dataclass(frozen=True)
class HandoffSummary:
    """One planned handoff as ``--json`` and ``--dry-run`` show it."""

    person: str
    person_key: str
    score: int
    rep: str
    why_rep: str
    task_in: list[str]
    reasons: list[dict[str, Any]]


@dataclass(frozen=True)
class NurtureItem:
    person_key: str
    name: str
    score: int
    reason: str


@dataclass
class HandoffPlan:
    """Everything the cycle will do; printed by --dry-run."""

    handoffs: list[HandoffSummary] = field(default_factory=list)  # planned (and executed) in batches
    nurture: list[NurtureItem] = field(default_factory=list)
    capacity: dict[str, dict[str, int]] = field(default_factory=dict)
    unavailable_reps: dict[str, str] = field(default_factory=dict)
    set_aside_errors: set[str] = field(default_factory=set)  # person keys set aside as record errors


@dataclass
class CycleContext:
    """What one cycle gathered, shared by the plan and the execute steps."""

    now: datetime
    dry_run: bool
    run_id: int | None = None
    owners: dict[str, list[Owner]] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    activities: dict[str, list[Activity]] = field(default_factory=dict)
    qualifications: dict[str, Qualification] = field(default_factory=dict)
    ledger: dict[str, list[LedgerEntry]] = field(default_factory=dict)
    pulled: Counter[str] = field(default_factory=Counter)
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    scored: int = 0  # profile evaluations (a person in both CRMs may be scored twice)
    qualified: set[str] = field(default_factory=set)  # sales-ready people seen this cycle
    new_activities: int = 0
    pulled_activities: int = 0
    fresh_activities: list[Activity] = field(default_factory=list)  # dry-run: not in the state
    touched: dict[str, set[str]] = field(default_factory=dict)
    seen: dict[str, set[str]] = field(default_factory=dict)
    queue_overlay: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    pending_queue: list[tuple[str, int, dict[str, Any], str, datetime]] = field(default_factory=list)
    pulls: dict[str, PeoplePull] = field(default_factory=dict)
    activities_pending: set[str] = field(default_factory=set)  # CRMs whose activity is still coming
    early: set[str] = field(default_factory=set)  # CRMs whose people were scored meanwhile
    late_emails: set[str] = field(default_factory=set)  # whom that activity concerns, by email
    errors: list[dict[str, str]] = field(default_factory=list)
    stopped: str | None = None
    should_stop: Callable[[], str | None] | None = None

    def checkpoint(self) -> None:
        """A safe point: stop here (StopRequested) when asked to."""
        reason = self.should_stop() if self.should_stop else None
        if reason:
            raise StopRequested(reason)

    def count(self, what: str, crm: str, n: int = 1) -> None:
        self.counts.setdefault(what, Counter())[crm] += n

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


def _chunks(pages: Iterator[PeoplePage], size: int) -> Iterator[tuple[list[Person], PeoplePage]]:
    """Group pages into chunks of about ``size`` people; each with the page that ends it."""
    people: list[Person] = []
    for page in pages:
        people += page.people
        if len(people) >= size or page.resume is None or not page.people:  # empty: a phase boundary
            yield people, page
            people = []


class Ahead:
    """Pages of one pull, fetched on a thread of their own while earlier ones are processed.

    At most ``limit`` people wait (plus the page being fetched), so memory stays flat.
    Pages come out in order; an exception the pull raises comes out, in its place, as
    the same exception. ``close`` stops the thread before its next page.
    """

    def __init__(
        self, name: str, pages: Callable[[], Iterator[PeoplePage]], limit: int = AHEAD, start: bool = True
    ) -> None:
        self._items: deque[tuple[PeoplePage | None, BaseException | None]] = deque()
        self._held = 0
        self._limit = limit
        self._cond = threading.Condition()
        self._closed = False
        self._started = False
        self.then: Ahead | None = None  # started when this pull has fetched its last page
        self._thread = threading.Thread(target=self._run, args=(pages,), name=f"pull-{name}", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        with self._cond:
            if self._started or self._closed:
                return
            self._started = True
        self._thread.start()

    def _run(self, pages: Callable[[], Iterator[PeoplePage]]) -> None:
        end: tuple[PeoplePage | None, BaseException | None] = (None, None)
        it: Iterator[PeoplePage] | None = None
        try:
            it = pages()
            for page in it:
                with self._cond:
                    while self._held >= self._limit and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    self._items.append((page, None))
                    self._held += len(page.people)
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer, raised there
            end = (None, exc)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        with self._cond:
            self._items.append(end)
            self._cond.notify_all()
            closed = self._closed
        if self.then is not None and end[1] is None and not closed:
            self.then.start()

    def __iter__(self) -> Iterator[PeoplePage]:
        self.start()  # normally already started (by the previous pull, or at once)
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait()
                page, exc = self._items.popleft()
                if page is not None:
                    self._held -= len(page.people)
                    self._cond.notify_all()
            if page is not None:
                yield page
            elif exc is not None:
                raise exc
            else:
                return

    def close(self, wait: float = 30.0) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._held = 0
            self._cond.notify_all()
            started = self._started
        if started and self._thread is not threading.current_thread():
            self._thread.join(wait)


@dataclass
class PeoplePull:
    """One CRM's pass over its changed people: where it starts, and its pages."""

    since: datetime | None
    resume: Any
    started: str
    pages: Ahead


@dataclass
class ActivityPull:
    """One CRM's activity pull, inline or on a thread of its own."""

    crm: str
    started: datetime
    pages: Any = ()  # inline: the connector's iterator; on a thread: what was fetched, not yet taken
    thread: threading.Thread | None = None
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    late: bool = False  # reaches back the connector's ``activity_late`` (see ``start_activities``)

    def fetch(self, pull: Callable[[], Iterator[Activity]]) -> None:
        try:
            for act in pull():
                with self.lock:
                    self.pages.append(act)
        except BaseException as exc:  # re-raised on the processing thread (finish_activities)
            self.error = exc

    def take(self) -> list[Activity]:
        """What the thread fetched since the last ``take`` (saved by the processing thread)."""
        if self.thread is None:
            return []
        with self.lock:
            taken, self.pages = self.pages, []
        return list(taken)


class Engine:
    """Gathers, scores and plans handoff cycles against connectors and a state store."""

    def __init__(
        self,
        mapping: MappingSet,
        state: StateStore,
        connectors: Mapping[str, Connector],
        lookback: timedelta = DEFAULT_LOOKBACK,
        clock: Clock = utc_now,
        activity_lookback: timedelta = DEFAULT_ACTIVITY_LOOKBACK,
        config_path: Path | str | None = None,
    ) -> None:
        self.mapping = mapping
        self.config_path = config_path  # where the mapping files are, for error lines
        self.state = state
        self.connectors = connectors
        self.lookback = lookback
        self.activity_lookback = activity_lookback
        self.clock = clock  # stamps watermarks and the owners cache

    @property
    def order(self) -> list[str]:
        """The CRMs in processing order: Salesforce first, so its pull and processing (CPU)
        overlap HubSpot's activity pull (bound by HubSpot's rate limit, on a thread)."""
        return sorted(self.connectors, key=lambda crm: crm != "salesforce")

    @property
    def window_days(self) -> int:
        return self.mapping.sales_ready.longest_window_days

    # --- owners -----------------------------------------------------------------
    def load_owners(self, ctx: CycleContext) -> None:
        """Owners/users, pulled at most once an hour (cached in the state).

        The cache is refreshed early when an active rep has no owner/user in it.
        """
        for crm, conn in self.connectors.items():
            cached = json.loads(self.state.watermark(crm, "owners") or "{}")
            at = _parse_ts(cached.get("at"))
            owners = [
                Owner(conn.name, o["id"], o["email"], o["name"], o["active"])
                for o in cached.get("owners", [])
            ]
            emails = {o.email for o in owners if o.active}
            reps = [r.email for r in self.mapping.reps.reps if r.active and crm in self.task_crms(r)]
            if at and self.clock() - at < OWNERS_TTL and all(r in emails for r in reps):
                ctx.owners[crm] = owners
                continue
            ctx.owners[crm] = conn.pull_owners()
            if not ctx.dry_run:
                blob = {"at": self.clock().isoformat(), "owners": [asdict(o) for o in ctx.owners[crm]]}
                self.state.set_watermark(crm, "owners", json.dumps(blob))

    # --- activities -------------------------------------------------------------
    def start_activities(self, ctx: CycleContext, crm: str, background: bool = True) -> ActivityPull:
        """Start one CRM's activity pull; ``background``: fetched on a thread of its own
        (held in memory until ``finish_activities``; the state is written on this thread)."""
        window = ctx.now - timedelta(days=self.window_days)
        mark = _parse_ts(self.state.watermark(crm, "activities"))
        since = max(mark - self.activity_lookback, window) if mark else window
        pull = ActivityPull(crm, self.clock())
        # A CRM whose activity is read by occurrence time (``activity_late``: HubSpot) also
        # re-reads, once an hour, what occurred up to that long before the previous such read.
        late = getattr(self.connectors[crm], "activity_late", None)
        wide = _parse_ts(self.state.watermark(crm, "activities_late")) if late else None
        pull.late = bool(late) and (not mark or not wide or pull.started - wide >= LATE_EVERY)
        if pull.late and mark and late:
            since = max(min(since, (wide or mark) - self.activity_lookback - late), window)
        fetch = partial(self.connectors[crm].pull_activities, since)
        if background:
            pull.pages = []
            pull.thread = threading.Thread(
                target=pull.fetch, args=(fetch,), name=f"activity-{crm}", daemon=True
            )
            pull.thread.start()
        else:
            pull.pages = fetch()
        return pull

    def keep_fetched(self, ctx: CycleContext, pull: ActivityPull) -> None:
        """Save what a background activity pull has fetched so far (memory stays flat)."""
        self._keep_late(ctx, pull.take())

    def _keep_late(self, ctx: CycleContext, batch: Sequence[Activity]) -> None:
        # Activity arriving after processing began: its own CRM's people come later (after
        # ``finish_activities``), so only the emails can point at people scored meanwhile.
        ctx.late_emails.update(a.email.lower() for a in batch if a.email and not a.person_id)
        if batch:
            self._keep_activities(ctx, batch)

    def finish_activities(self, ctx: CycleContext, pull: ActivityPull) -> None:
        """Wait for an activity pull, save what it fetched and move its watermark."""
        if pull.thread is not None:
            pull.thread.join()
            if pull.error is not None:
                raise pull.error
        for batch in chunked(pull.take() if pull.thread else pull.pages, ACTIVITY_BATCH):  # flat memory
            if pull.thread is not None:
                self._keep_late(ctx, batch)
            else:
                self._keep_activities(ctx, batch)
        if not ctx.dry_run:
            self.state.set_watermark(pull.crm, "activities", pull.started.isoformat())
            if pull.late:
                self.state.set_watermark(pull.crm, "activities_late", pull.started.isoformat())
        ctx.activities_pending.discard(pull.crm)

    def _keep_activities(self, ctx: CycleContext, batch: Sequence[Activity]) -> None:
        ctx.pulled_activities += len(batch)
        incremental = {crm for crm, pull in ctx.pulls.items() if pull.since is not None}
        every = incremental == set(self.connectors)
        for act in batch:  # whom new activity touched, where a pass may not pull them (``touched_people``)
            if act.person_id and act.crm in incremental:
                ctx.touched.setdefault(act.crm, set()).add(act.person_id)
            elif act.email and not act.person_id and every:
                ctx.touched.setdefault("email", set()).add(act.email.lower())
        if ctx.dry_run:
            ctx.fresh_activities += batch
        elif batch:
            ctx.new_activities += self.state.save_activities(batch)

    # --- people -----------------------------------------------------------------
    def pull_people(
        self, ctx: CycleContext, on_chunk: Any, on_reconcile: Any = None, before_pass: Any = None
    ) -> None:
        """Pull every CRM's changed people in checkpointed chunks; ``on_chunk`` processes one.

        ``before_pass(crm)`` is called before a CRM's chunks are processed.

        ``on_reconcile(crm, alive)`` receives a connector's full list of live ids when it
        had to reconcile (a gap longer than its deletes window).
        """
        try:
            self.open_pulls(ctx)
            for crm in self.order:
                if before_pass is not None:
                    before_pass(crm)
                self._pull_pass(ctx, crm, on_chunk, on_reconcile)
        finally:
            self.close_pulls(ctx)

    def open_pulls(self, ctx: CycleContext) -> None:
        """Start the CRMs' people passes, each on a thread of its own, ahead of processing.

        Processing stays on the calling thread, one chunk at a time and in ``order`` (Salesforce first);
        only the fetching of the next pages overlaps it (and the activity pull). A CRM's
        pull starts when the previous CRM's has fetched its last page, so only one
        CRM's pages wait in memory at a time.
        """
        previous: Ahead | None = None
        for crm in self.order:
            conn = self.connectors[crm]
            if crm in ctx.pulls:
                previous = ctx.pulls[crm].pages
                continue
            checkpoint = json.loads(self.state.watermark(crm, "people") or "{}")
            if "resume" in checkpoint:  # an interrupted pass: continue after its last chunk
                since, resume = _parse_ts(checkpoint.get("since")), checkpoint["resume"]
                started = checkpoint["started"]
            else:
                mark = _parse_ts(checkpoint.get("watermark"))
                since, resume = (mark - self.lookback if mark else None), None
                started = self.clock().isoformat()
            pages = Ahead(crm, partial(conn.pull_people, since, resume), start=previous is None)
            if previous is not None:
                previous.then = pages
            previous = pages
            ctx.pulls[crm] = PeoplePull(since, resume, started, pages)

    def close_pulls(self, ctx: CycleContext) -> None:
        """Stop the pull threads (those that have not finished)."""
        for pull in ctx.pulls.values():
            pull.pages.close()

    def _pull_pass(self, ctx: CycleContext, crm: str, on_chunk: Any, on_reconcile: Any) -> None:
        pull = ctx.pulls[crm]
        since, started = pull.since, pull.started
        if since is not None:
            ctx.seen.setdefault(crm, set())
        for people, last in _chunks(iter(pull.pages), CHUNK):
            ctx.pulled[crm] += len(people)
            if crm in ctx.seen:  # incremental: echoes of our own writes change nothing
                people = self._without_echoes(ctx, crm, people)
                ctx.seen[crm] |= {p.id for p in people}
            if people:
                on_chunk(people, fresh=True)
                if ctx.activities_pending:  # scored before all activity was in: see ``early_touched``
                    ctx.early.add(crm)
            if last.alive is not None and on_reconcile is not None:
                on_reconcile(crm, last.alive)
            if ctx.dry_run:
                continue
            if last.resume is not None:
                mid = {
                    "since": since.isoformat() if since else None,
                    "resume": last.resume,
                    "started": started,
                }
                self.state.set_watermark(crm, "people", json.dumps(mid))
            else:  # the pass is complete: the next one starts here (minus the lookback)
                done = last.watermark.isoformat() if last.watermark else started
                self.state.set_watermark(crm, "people", json.dumps({"watermark": done}))
            ctx.checkpoint()  # the chunk and its resume token are saved: a safe point

    def _without_echoes(self, ctx: CycleContext, crm: str, people: list[Person]) -> list[Person]:
        """The pulled people whose record differs from the mirror in more than its stamps.

        A record we wrote comes back from the next pull with a new modification stamp and
        the values we wrote, which the mirror already holds (``_mirror_writes``): it is
        skipped, counted as ``unchanged``. Its mirror copy keeps the stamp of the last
        change made by someone else, so "the newer side wins" is never decided by our own
        writes. A skipped person with new activity is still scored (``touched_people``).
        """
        stamps = self.connectors[crm].stamp_fields
        mirror = {m.id: m for m in self.state.people_by_ids(crm, [p.id for p in people if not p.deleted])}
        changed = [p for p in people if p.id not in mirror or not same_record(p, mirror[p.id], stamps)]
        if len(changed) < len(people):
            ctx.count("unchanged", crm, len(people) - len(changed))
        return changed

    def early_touched(self, ctx: CycleContext) -> Iterator[list[Person]]:
        """People scored before a background activity pull was in, whom it touched (by
        email): they are scored again, a chunk at a time."""
        refs: dict[str, set[str]] = {crm: set() for crm in ctx.early}
        for crm, pid in self._ids_by_email(ctx.late_emails):
            if crm in refs and (crm not in ctx.seen or pid in ctx.seen[crm]):
                refs[crm].add(pid)  # pulled this cycle (the rest: ``touched_people``)
        ctx.early.clear()
        ctx.late_emails.clear()
        for crm, ids in refs.items():
            for chunk in chunked(sorted(ids), CHUNK):
                yield self.state.people_by_ids(crm, chunk)

    def touched_people(self, ctx: CycleContext) -> list[Person]:
        """People with new activity who were not pulled this cycle, from the mirror."""
        out: list[Person] = []
        for crm in self.connectors:
            if crm not in ctx.seen:
                continue  # a full pass saw everyone
            ids = sorted(ctx.touched.get(crm, set()) - ctx.seen[crm])
            out += self.state.people_by_ids(crm, ids)
        if all(crm in ctx.seen for crm in self.connectors):
            by_crm: dict[str, set[str]] = {}
            for crm, pid in self._ids_by_email(ctx.touched.get("email", set())):
                if crm in ctx.seen and pid not in ctx.seen[crm]:
                    by_crm.setdefault(crm, set()).add(pid)
            for crm, pids in by_crm.items():
                out += self.state.people_by_ids(crm, sorted(pids))
        return out

    def _ids_by_email(self, emails: set[str]) -> Iterator[tuple[str, str]]:
        """(CRM, id) of every mirrored identity with one of ``emails``."""
        for part in chunked(sorted(emails), CHUNK):
            for ident in self.state.identities_for([], [], part):
                for crm, pid in (("hubspot", ident.hubspot_id), ("salesforce", ident.salesforce_id)):
                    if pid:
                        yield crm, pid

    def profiles_for(self, ctx: CycleContext, people: Sequence[Person]) -> dict[str, Profile]:
        """Merge people with their counterparts from the mirror, then stage and score them."""
        index = IdentityIndex(
            self.state.identities_for(
                [p.id for p in people if p.crm == "hubspot"]
                + [p.linked_id for p in people if p.crm == "salesforce" and p.linked_id],
                [p.id for p in people if p.crm == "salesforce"]
                + [p.linked_id for p in people if p.crm == "hubspot" and p.linked_id],
                [p.email for p in people if p.email],
            )
        )
        mine = {(p.crm, p.id) for p in people}
        extra = self._counterparts(people, index, mine)
        grouped = group_people([*people, *extra], index)
        profiles = {
            k: p
            for k, p in grouped.items()
            if any((q.crm, q.id) in mine for q in (p.hubspot, p.salesforce) if q)
        }
        self._score(ctx, profiles)
        return profiles

    def _counterparts(self, people: Sequence[Person], index: IdentityIndex, mine: set[Any]) -> list[Person]:
        want: dict[str, set[str]] = {"hubspot": set(), "salesforce": set()}
        for p in people:
            key = index.key_for(p)
            ident = index.by_key.get(key) if key else None
            if ident and ident.hubspot_id:
                want["hubspot"].add(ident.hubspot_id)
            if ident and ident.salesforce_id:
                want["salesforce"].add(ident.salesforce_id)
            if p.linked_id:
                want["salesforce" if p.crm == "hubspot" else "hubspot"].add(p.linked_id)
            if p.converted_to:
                want["salesforce"].add(p.converted_to)
        out: list[Person] = []
        for crm, ids in want.items():
            ids = {i for i in ids if (crm, i) not in mine}
            if ids:
                out += self.state.people_by_ids(crm, sorted(ids))
        return out

    def _score(self, ctx: CycleContext, profiles: Mapping[str, Profile]) -> None:
        last = self.state.field_values(list(profiles))
        window = ctx.now - timedelta(days=self.window_days)
        for key, prof in profiles.items():
            resolve(prof, self.mapping, last.get(key, {}))
        ids = [i for p in profiles.values() for i in p.crm_ids()]
        emails = [p.email for p in profiles.values() if p.email]
        acts = self.state.activities_for(ids, emails, window) if profiles else []
        acts += [a for a in ctx.fresh_activities if a.occurred_at >= window]
        by_ref: dict[str, list[Activity]] = {}
        for act in acts:
            for ref in (act.person_id, act.email):
                if ref:
                    by_ref.setdefault(ref, []).append(act)
        for key, prof in profiles.items():
            refs = [*prof.crm_ids(), prof.email or ""]
            ctx.activities[key] = list(
                {(a.crm, a.id): a for ref in refs for a in by_ref.get(ref, [])}.values()
            )
            ctx.qualifications[key] = qualify(
                self.mapping.sales_ready, prof.values, prof.stage, ctx.activities[key], ctx.now
            )
        for entry in self.state.ledger_for_people(list(profiles)):
            ctx.ledger.setdefault(entry.person_key, []).append(entry)

    def forget(self, ctx: CycleContext, keys: Sequence[str]) -> None:
        """Drop per-person data of profiles that are not candidates (keeps memory flat)."""
        for key in keys:
            ctx.profiles.pop(key, None)
            ctx.activities.pop(key, None)
            ctx.qualifications.pop(key, None)
            ctx.ledger.pop(key, None)

    # --- the queue of sales-ready people ---------------------------------------
    def episode(self, ctx: CycleContext, prof: Profile) -> tuple[int, bool]:
        """(episode for a new handoff, whether the person may be handed off now).

        A person handed off before gets a new episode only once their rep recycled or
        disqualified them (a side stage) *and* they qualify again on behaviour that came
        after that decision, or after ``recycle_cool_off_days`` on any behaviour: a rep's
        decision holds, and the old activity never hands the lead back.
        """
        entries = [e for e in ctx.ledger.get(prof.key, []) if e.status != "failed"]
        if not entries:
            return 1, True
        latest = max(e.episode for e in entries)
        recycled = prof.stage in self.mapping.lifecycle.side_stages
        done = all(e.status == "done" for e in entries if e.episode == latest)
        if not (done and recycled):
            return latest, False
        handed = max(e.planned_at for e in entries if e.episode == latest)
        return latest + 1, self._qualifies_since(ctx, prof, max(handed, _decided_at(prof)))

    def _qualifies_since(self, ctx: CycleContext, prof: Profile, since: datetime) -> bool:
        rules = self.mapping.sales_ready
        if rules.recycle_cool_off_days is not None and ctx.now - since >= timedelta(
            days=rules.recycle_cool_off_days
        ):
            return bool(ctx.qualifications.get(prof.key) and ctx.qualifications[prof.key].qualified)
        fresh = [a for a in ctx.activities.get(prof.key, []) if a.occurred_at > since]
        return qualify(rules, prof.values, prof.stage, fresh, ctx.now).qualified

    def snapshot(self, ctx: CycleContext, prof: Profile) -> dict[str, Any]:
        return {
            "name": prof.name,
            "values": dict(prof.values),
            "owner_email": self.owner_email(ctx, prof),
            "hubspot_id": prof.hubspot.id if prof.hubspot else None,
            "salesforce_id": prof.salesforce.id if prof.salesforce else None,
            "salesforce_type": prof.salesforce.object_type if prof.salesforce else None,
        }

    def queue_rows(self, ctx: CycleContext) -> list[dict[str, Any]]:
        rows = {r["person_key"]: r for r in self.state.queued()}
        for key, row in ctx.queue_overlay.items():
            if row is None:
                rows.pop(key, None)
            else:
                rows[key] = row
        return sorted(rows.values(), key=lambda r: (-int(r["score"]), str(r["queued_at"]), r["person_key"]))

    def queued_keys(self, ctx: CycleContext, keys: Sequence[str]) -> set[str]:
        """Which of these people are on the queue (the dry run's overlay included)."""
        out = self.state.queued_keys(keys)
        for key in keys:
            if key in ctx.queue_overlay:
                (out.add if ctx.queue_overlay[key] is not None else out.discard)(key)
        return out

    def enqueue(self, ctx: CycleContext, prof: Profile, q: Qualification, blocked: str | None = None) -> None:
        """Queue a sales-ready person (or, ``blocked``, one set aside with that reason)."""
        snap = self.snapshot(ctx, prof)
        if blocked:
            snap["set_aside"] = blocked
        if q.valid_until is not None:  # evaluated again then, as behaviour leaves its window
            snap["valid_until"] = q.valid_until.isoformat()
        if ctx.dry_run:
            ctx.queue_overlay[prof.key] = {
                "person_key": prof.key,
                "score": q.score,
                "snapshot": snap,
                "reason": "sales-ready",
                "queued_at": ctx.now,
                "status_written": None,
            }
        else:  # written with the chunk (``flush_queue``)
            ctx.pending_queue.append((prof.key, q.score, snap, "sales-ready", ctx.now))

    def blocked(self, q: Qualification) -> str | None:
        """Why a person who is not sales-ready is still queued, set aside (no email)."""
        return None if q.qualified else missing_email(q.score, self.mapping.sales_ready.threshold, q.blockers)

    def flush_queue(self, ctx: CycleContext) -> None:
        """Write the people ``enqueue`` gathered, in one transaction."""
        if ctx.pending_queue:
            self.state.enqueue_many(ctx.pending_queue)
            ctx.pending_queue.clear()

    def dequeue(self, ctx: CycleContext, keys: Sequence[str]) -> None:
        if ctx.dry_run:
            ctx.queue_overlay.update(dict.fromkeys(keys))
        elif keys:
            self.state.dequeue(keys)

    def owner_email(self, ctx: CycleContext, prof: Profile) -> str | None:
        for person in (prof.salesforce, prof.hubspot):
            if person and person.owner_id:
                email = ctx.owner_emails(person.crm).get(person.owner_id)
                if email:
                    return email
        return None

    # --- plan -------------------------------------------------------------------
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

    def plan(self, ctx: CycleContext) -> tuple[HandoffPlan, RoutingPlan]:
        """Route the whole queue within this week's capacity; set-aside people are not routed."""
        reps, unavailable = self.available_reps(ctx)
        weeks = {r.email: week_start(ctx.now, r.timezone) for r in self.mapping.reps.reps}
        used = self.state.used_capacity(weeks)
        used = add_outside_work(used, self.mapping.reps, self.connectors, ctx.owner_ids)  # reps.yaml
        rows = self.queue_rows(ctx)
        candidates = [
            Candidate(
                r["person_key"],
                int(r["score"]),
                (r["snapshot"] or {}).get("values", {}),
                (r["snapshot"] or {}).get("owner_email"),
                r["queued_at"],
            )
            for r in rows
        ]
        aside = self._set_aside(rows)
        routing = plan_routing(
            [c for c in candidates if c.person_key not in aside], reps, used, self.mapping.reps.pools
        )
        set_aside_deferrals = tuple(
            Deferral(c, aside[c.person_key].reason) for c in candidates if c.person_key in aside
        )
        routing = replace(routing, deferrals=routing.deferrals + set_aside_deferrals)
        plan = HandoffPlan(
            unavailable_reps=unavailable, set_aside_errors={k for k, a in aside.items() if a.is_error}
        )
        for email, load in routing.loads.items():
            plan.capacity[email] = {
                "capacity": load.capacity,
                "used_before": load.used_before,
                "assigned": load.assigned,
                "left": load.left,
            }
        names = {r["person_key"]: (r["snapshot"] or {}).get("name") or r["person_key"] for r in rows}
        for d in routing.deferrals:
            key = d.candidate.person_key
            plan.nurture.append(NurtureItem(key, names.get(key, key), d.candidate.score, d.reason))
        return plan, routing

    def _set_aside(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, SetAside]:
        """Queued people who cannot be placed (``sync.setaside``), from the mirror and ledger."""
        queued = [
            QueuedPerson(
                r["person_key"],
                normalize_email((r["snapshot"] or {}).get("values", {}).get("email")),
                (r["snapshot"] or {}).get("set_aside"),
            )
            for r in rows
        ]
        emails = [q.email for q in queued if q.email]
        return set_aside(queued, self.state.records_per_email(emails), self.state.handed_off_by_email(emails))

    def load_profiles(self, ctx: CycleContext, keys: Sequence[str]) -> None:
        """Candidate profiles not in memory, rebuilt from the mirror and re-scored."""
        missing = [k for k in keys if k not in ctx.profiles]
        if not missing:
            return
        people = self.mirrored_people(missing)
        if people:
            ctx.profiles.update(self.profiles_for(ctx, people))

    def mirrored_people(self, keys: Sequence[str]) -> list[Person]:
        """The mirror's records of these people (both CRMs)."""
        idents = self.state.identities_by_key(keys)
        people = self.state.people_by_ids("hubspot", [i.hubspot_id for i in idents if i.hubspot_id])
        people += self.state.people_by_ids("salesforce", [i.salesforce_id for i in idents if i.salesforce_id])
        return people

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
            rep_view(rep),
            ctx.now,
        )

    def planned_handoff(self, ctx: CycleContext, key: str, rep: Rep, why: str) -> PlannedHandoff | None:
        """The handoff for a routed person, if they are (still) sales-ready."""
        prof, q = ctx.profiles.get(key), ctx.qualifications.get(key)
        if prof is None or q is None or not q.qualified:
            return None
        episode, allowed = self.episode(ctx, prof)
        if not allowed:
            return None
        return PlannedHandoff(
            key=_episode_key(key, episode),
            episode=episode,
            profile=prof,
            rep=rep,
            why=why,
            qualification=q,
            brief=self.brief_for(ctx, key, rep),
            task_crms=self.task_crms(rep),
        )


def _decided_at(prof: Profile) -> datetime:
    """When the rep's recycle decision was made, at the latest: the newest record's change."""
    stamps = [p.modified_at for p in (prof.hubspot, prof.salesforce) if p is not None]
    return max(stamps, default=datetime.min.replace(tzinfo=UTC))


def reasons_json(reasons: Sequence[Reason]) -> list[dict[str, Any]]:
    return [{"rule": r.rule, "points": r.points, "detail": r.detail} for r in reasons]


def same_record(pulled: Person, mirrored: Person, stamps: frozenset[str]) -> bool:
    """True when ``pulled`` holds what the mirror holds, modification stamps aside.

    Only the values the pull returned are compared: the mirror may also hold values we
    wrote but do not read back.
    """
    if pulled.deleted or (pulled.email or "").lower() != (mirrored.email or "").lower():
        return False
    if (
        pulled.object_type,
        pulled.owner_id,
        pulled.linked_id,
        pulled.converted_to,
        pulled.opportunity_stage,
    ) != (
        mirrored.object_type,
        mirrored.owner_id,
        mirrored.linked_id,
        mirrored.converted_to,
        mirrored.opportunity_stage,
    ):
        return False
    return all(v == mirrored.values.get(k) for k, v in pulled.values.items() if k not in stamps)
