"""Stage 1, ingest: what the connectors return goes into the state; who to evaluate comes out.

Entry point: ``batches(engine, ctx)``, an iterator of ``Batch``. In order:

- owners (cached an hour in the state);
- activity, per CRM: pulled inline, or (``Connector.activity_in_background``, rate-limited)
  on a thread while the other CRMs are pulled and evaluated; saved as it arrives, and
  every person it touches *marked for evaluation* in the state (``to_evaluate``);
- people, CRM by CRM, in checkpointed chunks of changed records (echoes of our own
  writes skipped, HubSpot merges and deletions applied): each chunk is one fresh batch.
  The pass's resume token is saved once the chunk is evaluated and written, so the
  chunk is the unit of resumption;
- then everyone still marked (activity for people not pulled, people evaluated before
  their activity arrived, queued people whose qualifying behaviour leaves its window)
  in batches read from the mirror. A batch's marks go once the consumer is done with it;
  a crash leaves them, and the next run evaluates those people.

A persisted mark set, rather than re-scoring from in-memory sets, is what makes late
activity and lapsing scores survive a crash, and gives webhooks and outcome polls a
place to enter: they mark people, the next batches evaluate them.

A micro-cycle (``webhook_batches``, the worker's ``webhooks`` job) ingests instead: owners
(cached), HubSpot's account-wide activity since its watermark (no late re-read), then the
contacts that stored webhook events name, read back from HubSpot by batch read (100 a
call) rather than by the incremental search, each batch of events marked processed once its
people are evaluated and written; then everyone marked, as above. The people pass of
either CRM is left to the scheduled cycle.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import structlog
from more_itertools import chunked

from crm_handoff.records import Activity, Owner, Person
from sync import queue
from sync.context import CHUNK, CycleContext
from sync.engine import Engine, same_record
from sync.items import PassCheckpoint
from sync.pulls import ActivityPull, Ahead, PeoplePull, chunks
from sync.remap import mark_on_mapping_change

if TYPE_CHECKING:
    from connectors.hubspot.connector import HubSpotConnector

log = structlog.get_logger("handoff.ingest")

LATE_EVERY = timedelta(hours=1)  # activity read by occurrence time: its late window, once an hour
ACTIVITY_BATCH = 5000  # pulled activities saved together
OWNERS_TTL = timedelta(hours=1)
WEBHOOK_CRM = "hubspot"  # the CRM whose webhook deliveries a micro-cycle reads


@dataclass(frozen=True)
class Batch:
    """People to evaluate together: just pulled (``fresh``), or marked and read from the mirror."""

    people: list[Person]
    fresh: bool


def batches(engine: Engine, ctx: CycleContext) -> Iterator[Batch]:
    """Everything this cycle ingests, as batches of people to evaluate (see the module);
    a micro-cycle (``engine.trigger == "webhooks"``): ``webhook_batches``."""
    if engine.trigger == "webhooks":
        yield from webhook_batches(engine, ctx)
        return
    load_owners(engine, ctx)
    mark_on_mapping_change(engine, ctx)  # a changed mapping: everyone is evaluated again
    _open_pulls(engine, ctx)  # people pages are fetched while activity is pulled
    try:
        background = _start_activities(engine, ctx)
        for crm in engine.pull_order:
            if crm in background:
                _finish_activities(engine, ctx, background.pop(crm))
            yield from _people_pass(engine, ctx, crm, list(background.values()))
    finally:
        for pull in ctx.pulls.values():
            pull.pages.close()
    for key_part in chunked(engine.state.lapsing_keys(ctx.now), CHUNK):
        queue.mark(engine.state, ctx, [("key", k) for k in key_part])
    yield from _marked(engine, ctx)


# --- owners ---------------------------------------------------------------------


def load_owners(engine: Engine, ctx: CycleContext) -> None:
    """Owners/users, pulled at most once an hour (cached in the state).

    The cache is refreshed early when an active rep has no owner/user in it.
    """
    for crm, conn in engine.connectors.items():
        cached = json.loads(engine.state.watermark(crm, "owners") or "{}")
        at = _parse_ts(cached.get("at"))
        owners = [
            Owner(conn.name, o["id"], o["email"], o["name"], o["active"]) for o in cached.get("owners", [])
        ]
        emails = {o.email for o in owners if o.active}
        reps = [r.email for r in engine.mapping.reps.reps if r.active and crm in engine.task_crms(r)]
        if at and engine.clock() - at < OWNERS_TTL and all(r in emails for r in reps):
            ctx.owners[crm] = owners
            continue
        ctx.owners[crm] = conn.pull_owners()
        if not ctx.dry_run:
            blob = {"at": engine.clock().isoformat(), "owners": [asdict(o) for o in ctx.owners[crm]]}
            engine.state.set_watermark(crm, "owners", json.dumps(blob))


# --- activity -------------------------------------------------------------------


def _start_activities(engine: Engine, ctx: CycleContext) -> dict[str, ActivityPull]:
    """Every pulled CRM's activity pull: inline ones finished now, background ones started."""
    order = engine.pull_order
    background = {
        crm: _start_pull(engine, ctx, crm, background=True)
        for crm in order[1:]
        if engine.connectors[crm].activity_in_background
    }
    for crm in order:
        if crm not in background:
            _finish_activities(engine, ctx, _start_pull(engine, ctx, crm, background=False))
    return background


def _start_pull(engine: Engine, ctx: CycleContext, crm: str, background: bool) -> ActivityPull:
    """Start one CRM's activity pull from its watermark (minus the lookback).

    A CRM whose activity is read by occurrence time (``Connector.activity_late``) also
    re-reads, once an hour, what occurred up to that long before the previous such read.
    """
    conn = engine.connectors[crm]
    window = ctx.now - timedelta(days=engine.window_days)
    mark = _parse_ts(engine.state.watermark(crm, "activities"))
    since = max(mark - engine.activity_lookback, window) if mark else window
    pull = ActivityPull(crm, engine.clock())
    late = conn.activity_late
    wide = _parse_ts(engine.state.watermark(crm, "activities_late")) if late else None
    pull.late = bool(late) and (not mark or not wide or pull.started - wide >= LATE_EVERY)
    if pull.late and mark and late:
        since = max(min(since, (wide or mark) - engine.activity_lookback - late), window)
    fetch = partial(conn.pull_activities, since)
    if background:
        pull.pages = []
        pull.thread = threading.Thread(target=pull.fetch, args=(fetch,), name=f"activity-{crm}", daemon=True)
        pull.thread.start()
    else:
        pull.pages = fetch()
    return pull


def _finish_activities(engine: Engine, ctx: CycleContext, pull: ActivityPull) -> None:
    """Wait for an activity pull, save what it fetched and move its watermark."""
    if pull.thread is not None:
        while pull.thread.is_alive():  # what arrives meanwhile is saved as it comes: flat memory
            pull.thread.join(timeout=1.0)
            for batch in chunked(pull.take(), ACTIVITY_BATCH):
                _keep_activities(engine, ctx, batch)
        if pull.error is not None:
            raise pull.error
    for batch in chunked(pull.take() if pull.thread else pull.pages, ACTIVITY_BATCH):  # flat memory
        _keep_activities(engine, ctx, batch)
    if not ctx.dry_run:
        engine.state.set_watermark(pull.crm, "activities", pull.started.isoformat())
        if pull.late:
            engine.state.set_watermark(pull.crm, "activities_late", pull.started.isoformat())


def _keep_activities(engine: Engine, ctx: CycleContext, batch: Sequence[Activity], mark: bool = True) -> None:
    """Save activities and mark the people they touch for evaluation.

    A record id is not marked for a CRM whose full pass is still to come (it evaluates
    everyone); an email (activity matched by address) always is.
    """
    ctx.pulled_activities += len(batch)
    if ctx.dry_run:
        ctx.fresh_activities += batch
    elif batch:
        ctx.new_activities += engine.state.save_activities(batch)
    if not mark:
        return
    refs: set[tuple[str, str]] = set()
    for act in batch:
        if act.person_id and not _full_pass_ahead(ctx, act.crm):
            refs.add((act.crm, act.person_id))
        elif act.email and not act.person_id:
            refs.add(("email", act.email.lower()))
    queue.mark(engine.state, ctx, refs)


def _full_pass_ahead(ctx: CycleContext, crm: str) -> bool:
    pull = ctx.pulls.get(crm)
    return pull is not None and pull.since is None and pull.resume is None and not pull.begun


# --- people ---------------------------------------------------------------------


def _open_pulls(engine: Engine, ctx: CycleContext) -> None:
    """Start the CRMs' people passes, each on a thread of its own, ahead of processing.

    Evaluation stays on the calling thread, one chunk at a time and in ``order``; only the
    fetching of the next pages overlaps it (and the activity pull). A CRM's pull starts
    when the previous CRM's has fetched its last page, so only one CRM's pages wait in
    memory at a time.
    """
    previous: Ahead | None = None
    for crm in engine.pull_order:
        conn = engine.connectors[crm]
        point = PassCheckpoint.from_json(json.loads(engine.state.watermark(crm, "people") or "{}"))
        if point.interrupted:  # an interrupted pass: continue after its last chunk
            since, resume, started = point.since, point.resume, str(point.started)
        else:
            since = point.watermark - engine.lookback if point.watermark else None
            resume, started = None, engine.clock().isoformat()
        pages = Ahead(crm, partial(conn.pull_people, since, resume), start=previous is None)
        if previous is not None:
            previous.then = pages
        previous = pages
        ctx.pulls[crm] = PeoplePull(since, resume, started, pages)


def _people_pass(
    engine: Engine, ctx: CycleContext, crm: str, background: Sequence[ActivityPull]
) -> Iterator[Batch]:
    """One CRM's changed people, a chunk at a time; the checkpoint saved after each."""
    pull = ctx.pulls[crm]
    pull.begun = True
    window = ctx.now - timedelta(days=engine.window_days)
    for people, last in chunks(iter(pull.pages), CHUNK):
        ctx.pulled[crm] += len(people)
        for other in background:  # what the other CRM's activity thread fetched meanwhile
            _keep_activities(engine, ctx, other.take())
        if pull.since is not None:  # incremental: echoes of our own writes change nothing
            people = _without_echoes(engine, ctx, crm, people)
        if people:
            _ingest_chunk(engine, ctx, people, window)
            yield Batch(people, fresh=True)
            live = [p for p in people if not p.deleted]
            settled = [(p.crm, p.id) for p in live] + [("email", e) for p in live if (e := _email(p))]
            queue.unmark(engine.state, ctx, settled)
        if last.alive is not None:
            _reconcile(engine, ctx, crm, last.alive)
        if not ctx.dry_run:
            _save_checkpoint(engine, crm, pull, last.resume, last.watermark)
            ctx.checkpoint()  # the chunk and its resume token are saved: a safe point


def _ingest_chunk(engine: Engine, ctx: CycleContext, people: Sequence[Person], window: datetime) -> None:
    """A chunk's own activity (meetings, calls...) read from its CRM; merges and deletions applied."""
    live = [p for p in people if not p.deleted]
    for crm, conn in engine.connectors.items():
        mine = [p for p in live if p.crm == crm]
        if mine:
            _keep_activities(engine, ctx, list(conn.activities_for(mine, window)), mark=False)
    if ctx.dry_run:
        return
    with engine.state.batch(lazy_sync=True):
        for p in live:
            merged = [m for m in (p.values.get("hs_merged_object_ids") or "").split(";") if m]
            if merged and p.crm == "hubspot":
                engine.state.merge_hubspot_ids(p.id, merged)
        _forget_deleted(engine, ctx, [p for p in people if p.deleted])


def _save_checkpoint(
    engine: Engine, crm: str, pull: PeoplePull, resume: object, watermark: datetime | None
) -> None:
    if resume is not None:
        point = PassCheckpoint(since=pull.since, resume=resume, started=pull.started)
    else:  # the pass is complete: the next one starts here (minus the lookback)
        point = PassCheckpoint(watermark=watermark or datetime.fromisoformat(pull.started))
    engine.state.set_watermark(crm, "people", json.dumps(point.to_json()))


def _without_echoes(engine: Engine, ctx: CycleContext, crm: str, people: list[Person]) -> list[Person]:
    """The pulled people whose record differs from the mirror in more than its stamps.

    A record we wrote comes back from the next pull with a new modification stamp and
    the values we wrote, which the mirror already holds: it is skipped, counted as
    ``unchanged``. Its mirror copy keeps the stamp of the last change made by someone
    else, so "the newer side wins" is never decided by our own writes. A skipped person
    with new activity is still evaluated: the activity marked them.
    """
    stamps = engine.connectors[crm].stamp_fields
    state = engine.state
    mirror = {m.id: m for m in state.people_by_ids(crm, [p.id for p in people if not p.deleted])}
    changed = [p for p in people if p.id not in mirror or not same_record(p, mirror[p.id], stamps)]
    if len(changed) < len(people):
        ctx.count("unchanged", crm, len(people) - len(changed))
    return changed


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
    queue.drop(engine.state, ctx, [i.person_key for i in engine.state.identities_for(hs, sf, [])])


# --- webhook deliveries (a micro-cycle) ------------------------------------------------


def webhook_batches(engine: Engine, ctx: CycleContext) -> Iterator[Batch]:
    """A micro-cycle's ingest: recent HubSpot activity, the contacts pending webhook events
    name (read back from HubSpot), then the marked people (see the module)."""
    load_owners(engine, ctx)
    if WEBHOOK_CRM in engine.connectors:
        _recent_activities(engine, ctx, WEBHOOK_CRM)
        yield from _delivered(engine, ctx, WEBHOOK_CRM)
    yield from _marked(engine, ctx)


def _recent_activities(engine: Engine, ctx: CycleContext, crm: str) -> None:
    """The CRM's account-wide activity since its watermark (minus the lookback), inline."""
    window = ctx.now - timedelta(days=engine.window_days)
    mark = _parse_ts(engine.state.watermark(crm, "activities"))
    since = max(mark - engine.activity_lookback, window) if mark else window
    pull = ActivityPull(crm, engine.clock())
    pull.pages = engine.connectors[crm].pull_activities(since)
    _finish_activities(engine, ctx, pull)


def _delivered(engine: Engine, ctx: CycleContext, crm: str) -> Iterator[Batch]:
    """The contacts named by events received before this cycle began, a batch of events at
    a time, read fresh from the CRM; the events are processed once the batch is written."""
    from connectors.hubspot.webhooks import read_contacts

    conn = _hubspot(engine, crm)
    window = ctx.now - timedelta(days=engine.window_days)
    while pending := engine.state.pending_events(crm, ctx.now, CHUNK):
        ids = sorted({p for e in pending for p in e.people})
        people = _without_echoes(engine, ctx, crm, read_contacts(conn, ids))
        ctx.pulled[crm] += len(ids)
        if people:
            _ingest_chunk(engine, ctx, people, window)
            yield Batch(people, fresh=True)
            queue.unmark(engine.state, ctx, _settled(people))
        if ctx.dry_run:
            return
        engine.state.events_processed(crm, [e.event_id for e in pending], ctx.now)
        ctx.checkpoint()


def _hubspot(engine: Engine, crm: str) -> HubSpotConnector:
    """The HubSpot connector behind the fence (reads pass it)."""
    from connectors.hubspot.connector import HubSpotConnector

    conn = getattr(engine.connectors[crm], "inner", engine.connectors[crm])
    if not isinstance(conn, HubSpotConnector):
        raise TypeError(f"webhook deliveries need the HubSpot connector, not {type(conn).__name__}")
    return conn


def _settled(people: Sequence[Person]) -> list[tuple[str, str]]:
    """The marks an evaluated batch of people settles: their records and emails."""
    live = [p for p in people if not p.deleted]
    return [(p.crm, p.id) for p in live] + [("email", e) for p in live if (e := _email(p))]


# --- marked people ----------------------------------------------------------------


def _marked(engine: Engine, ctx: CycleContext) -> Iterator[Batch]:
    """Everyone marked for evaluation, a batch at a time, read from the mirror."""
    while True:
        refs = queue.marked(engine.state, ctx, CHUNK)
        if not refs:
            return
        people = _resolve(engine, refs)
        if people:
            yield Batch(people, fresh=False)
        queue.unmark(engine.state, ctx, refs)  # after the batch's writes (or: nobody to evaluate)
        ctx.checkpoint()


def _resolve(engine: Engine, refs: Sequence[tuple[str, str]]) -> list[Person]:
    """The mirrored records that marks name (a mark naming nobody: none)."""
    state = engine.state
    ids: dict[str, set[str]] = {crm: set() for crm in engine.connectors}
    emails = [r for k, r in refs if k == "email"]
    keys = [r for k, r in refs if k == "key"]
    idents = (state.identities_for([], [], emails) if emails else []) + (
        state.identities_by_key(keys) if keys else []
    )
    for ident in idents:
        for crm, pid in (("hubspot", ident.hubspot_id), ("salesforce", ident.salesforce_id)):
            if pid and crm in ids:
                ids[crm].add(pid)
    for kind, ref in refs:
        if kind in ids:
            ids[kind].add(ref)
    out: list[Person] = []
    for crm, wanted in ids.items():
        out += state.people_by_ids(crm, sorted(wanted))
    return out


def _email(p: Person) -> str | None:
    return p.email.lower() if p.email else None  # as activity emails are stored


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
