"""Stage 2, evaluate: a batch of people merged, staged, synced, qualified and queued.

Entry point: ``evaluate(engine, ctx, batch) -> Evaluation``. Each person is merged with
their counterpart from the mirror (no CRM call), their canonical stage and field-sync
values resolved (``sync.profiles``), scored against the sales-ready definition
(``sync.qualify``), and put on the queue or taken off it. The field writes this decides
are returned, for ``sync.execute`` to send; only the queue is written here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_handoff.records import Activity, Person
from mappings.lifecycle import funnel_rank
from sync import queue
from sync.context import KEEP_PROFILES, CycleContext
from sync.engine import Engine
from sync.ingest import Batch
from sync.items import QueueItem, Snapshot
from sync.profiles import IdentityIndex, Profile, group_people, resolve
from sync.qualify import Qualification, qualify
from sync.setaside import missing_email
from sync.writes import STATUS_LAPSED, Writes, handoff_values, stage_values


@dataclass
class Evaluation:
    """What evaluating a batch decided: its profiles and the field writes to send."""

    batch: Batch
    profiles: dict[str, Profile]
    writes: Writes = field(default_factory=Writes)


def evaluate(engine: Engine, ctx: CycleContext, batch: Batch) -> Evaluation:
    """Evaluate one batch (see the module); the queue is updated in one transaction."""
    live = [p for p in batch.people if not p.deleted]
    with engine.state.batch(lazy_sync=True):  # made durable by the chunk's checkpoint
        profiles = profiles_for(engine, ctx, live)
        ctx.scored += len(profiles)
        result = Evaluation(batch, profiles)
        _queue(engine, ctx, profiles, result.writes)
    return result


# --- profiles -------------------------------------------------------------------


def profiles_for(engine: Engine, ctx: CycleContext, people: Sequence[Person]) -> dict[str, Profile]:
    """Merge people with their counterparts from the mirror, then stage and score them."""
    state = engine.state
    index = IdentityIndex(
        state.identities_for(
            [p.id for p in people if p.crm == "hubspot"]
            + [p.linked_id for p in people if p.crm == "salesforce" and p.linked_id],
            [p.id for p in people if p.crm == "salesforce"]
            + [p.linked_id for p in people if p.crm == "hubspot" and p.linked_id],
            [p.email for p in people if p.email],
        )
    )
    mine: set[tuple[str, str]] = {(p.crm, p.id) for p in people}
    extra = _counterparts(engine, people, index, mine)
    grouped = group_people([*people, *extra], index)
    profiles = {
        k: p for k, p in grouped.items() if any((q.crm, q.id) in mine for q in (p.hubspot, p.salesforce) if q)
    }
    _score(engine, ctx, profiles)
    return profiles


def load_profiles(engine: Engine, ctx: CycleContext, keys: Sequence[str]) -> None:
    """Profiles of these people not in memory, rebuilt from the mirror and scored again."""
    missing = [k for k in keys if k not in ctx.profiles]
    if not missing:
        return
    people = mirrored_people(engine, missing)
    if people:
        ctx.profiles.update(profiles_for(engine, ctx, people))


def mirrored_people(engine: Engine, keys: Sequence[str]) -> list[Person]:
    """The mirror's records of these people (both CRMs)."""
    idents = engine.state.identities_by_key(keys)
    people = engine.state.people_by_ids("hubspot", [i.hubspot_id for i in idents if i.hubspot_id])
    people += engine.state.people_by_ids("salesforce", [i.salesforce_id for i in idents if i.salesforce_id])
    return people


def _counterparts(
    engine: Engine, people: Sequence[Person], index: IdentityIndex, mine: set[tuple[str, str]]
) -> list[Person]:
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
            out += engine.state.people_by_ids(crm, sorted(ids))
    return out


def _score(engine: Engine, ctx: CycleContext, profiles: Mapping[str, Profile]) -> None:
    state = engine.state
    last = state.field_values(list(profiles))
    window = ctx.now - timedelta(days=engine.window_days)
    for key, prof in profiles.items():
        resolve(prof, engine.mapping, last.get(key, {}))
    ids = [i for p in profiles.values() for i in p.crm_ids()]
    emails = [p.email for p in profiles.values() if p.email]
    acts = state.activities_for(ids, emails, window) if profiles else []
    acts += [a for a in ctx.fresh_activities if a.occurred_at >= window]
    by_ref: dict[str, list[Activity]] = {}
    for act in acts:
        for ref in (act.person_id, act.email):
            if ref:
                by_ref.setdefault(ref, []).append(act)
    for key, prof in profiles.items():
        refs = [*prof.crm_ids(), prof.email or ""]
        ctx.activities[key] = list({(a.crm, a.id): a for ref in refs for a in by_ref.get(ref, [])}.values())
        ctx.qualifications[key] = qualify(
            engine.mapping.sales_ready, prof.values, prof.stage, ctx.activities[key], ctx.now
        )
    for entry in state.ledger_for_people(list(profiles)):
        ctx.ledger.setdefault(entry.person_key, []).append(entry)
    for row in state.outcomes_for_people(list(profiles)):
        ctx.outcomes.setdefault(row.person_key, []).append(row)


# --- episodes: may a person be handed off (again)? --------------------------------


def episode(engine: Engine, ctx: CycleContext, prof: Profile) -> tuple[int, bool]:
    """(episode for a new handoff, whether the person may be handed off now).

    A person handed off before gets a new episode only once their rep recycled or
    disqualified them (a side stage, or an outcome on the task that returns the lead:
    ``handoff.yaml outcomes``) *and* they qualify again on behaviour that came after that
    decision, or after the cool-off (the outcome's ``offer_again_after_days``, else
    ``recycle_cool_off_days``) on any behaviour: a rep's decision holds, and the old
    activity never hands the lead back. An outcome that disqualifies never does.
    """
    entries = [e for e in ctx.ledger.get(prof.key, []) if e.status != "failed"]
    if not entries:
        return 1, True
    latest = max(e.episode for e in entries)
    never, returned, days = _returned(engine, ctx, prof.key, latest)
    if never:
        return latest, False
    recycled = prof.stage in engine.mapping.lifecycle.side_stages or bool(returned)
    done = all(e.status == "done" for e in entries if e.episode == latest)
    if not (done and recycled):
        return latest, False
    handed = max(e.planned_at for e in entries if e.episode == latest)
    decided = max([handed, _decided_at(prof), *(r.decided_at for r in returned if r.decided_at)])
    return latest + 1, _qualifies_since(engine, ctx, prof, decided, days)


def _returned(
    engine: Engine, ctx: CycleContext, key: str, episode: int
) -> tuple[bool, list[Any], int | None]:
    """How the episode's handoffs ended, from their outcomes: (disqualified for good, the
    last handoffs if every one returned the lead, the outcome's offer-again days)."""
    rows = [r for r in ctx.outcomes.get(key, []) if chain_episode(r.key) == episode]
    choices = engine.mapping.handoff.outcomes.by_value()
    picked = [choices[r.outcome] for r in rows if r.outcome in choices and r.state != "open"]
    if any(c.action == "disqualify" for c in picked):
        return True, [], None
    finals = [r for r in rows if not r.next_key]  # the chain's last handoff (tasks in both CRMs: one row)
    returned = [r for r in finals if r.state in RETURNED_STATES]
    days = next((c.offer_again_after_days for c in picked if c.offer_again_after_days is not None), None)
    return False, returned if finals and len(returned) == len(finals) else [], days


RETURNED_STATES = ("rejected", "recycled", "deleted")


def chain_episode(key: str) -> int:
    """The episode number of a handoff key (``person#2`` or ``person#2.r1`` -> 2)."""
    tail = key.rsplit("#", 1)[-1].split(".", 1)[0]
    return int(tail) if tail.isdigit() else 0


def _qualifies_since(
    engine: Engine, ctx: CycleContext, prof: Profile, since: datetime, days: int | None = None
) -> bool:
    rules = engine.mapping.sales_ready
    cool_off = days if days is not None else rules.recycle_cool_off_days
    if cool_off is not None and ctx.now - since >= timedelta(days=cool_off):
        return bool(ctx.qualifications.get(prof.key) and ctx.qualifications[prof.key].qualified)
    fresh = [a for a in ctx.activities.get(prof.key, []) if a.occurred_at > since]
    return qualify(rules, prof.values, prof.stage, fresh, ctx.now).qualified


def _decided_at(prof: Profile) -> datetime:
    """When the rep's recycle decision was made, at the latest: the newest record's change."""
    stamps = [p.modified_at for p in (prof.hubspot, prof.salesforce) if p is not None]
    return max(stamps, default=datetime.min.replace(tzinfo=UTC))


# --- the queue --------------------------------------------------------------------


def owner_email(ctx: CycleContext, prof: Profile) -> str | None:
    """The email of the person's current owner (Salesforce's first), if a known user."""
    for person in (prof.salesforce, prof.hubspot):
        if person and person.owner_id:
            email = ctx.owner_emails(person.crm).get(person.owner_id)
            if email:
                return email
    return None


def snapshot(ctx: CycleContext, prof: Profile, q: Qualification, blocked: str | None = None) -> Snapshot:
    """What the plan needs of a queued person, kept on the queue row."""
    records: dict[str, tuple[str, str]] = {
        p.crm: (p.id, p.object_type) for p in (prof.hubspot, prof.salesforce) if p is not None
    }
    return Snapshot(
        name=prof.name,
        values=dict(prof.values),
        owner_email=owner_email(ctx, prof),
        records=records,
        set_aside=blocked,
        valid_until=q.valid_until,  # evaluated again then, as behaviour leaves its window
    )


def _queue(engine: Engine, ctx: CycleContext, profiles: Mapping[str, Profile], writes: Writes) -> None:
    """Field-sync writes for every profile; the sales-ready (or set-aside) ones queued, the others out."""
    drop: list[str] = []
    lapsed: list[tuple[Profile, Qualification]] = []
    new: list[QueueItem] = []
    threshold = engine.mapping.sales_ready.threshold
    for key, prof in profiles.items():
        _sync_writes(engine, prof, writes)
        q = ctx.qualifications[key]
        _missing_write(engine, prof, q, writes)
        # would be sales-ready but for missing data: a definition holds (a file without
        # definitions: the score reaches the threshold)
        would = threshold if q.definitions_met else min(q.score, threshold - 1)
        blocked = None if q.qualified else missing_email(would, threshold, q.blockers)
        if (q.qualified or blocked) and episode(engine, ctx, prof)[1]:
            if q.qualified:
                ctx.qualified.add(key)
            new.append(QueueItem(key, q.score, snapshot(ctx, prof, q, blocked), ctx.now))
            if len(ctx.profiles) < KEEP_PROFILES:
                ctx.profiles[key] = prof
                continue
        else:
            drop.append(key)
            ctx.qualified.discard(key)
            if not q.qualified:
                lapsed.append((prof, q))
        ctx.forget([key])
    queue.put(engine.state, ctx, new)
    _left_queue(engine, ctx, lapsed, writes)
    queue.drop(engine.state, ctx, drop)


def _left_queue(
    engine: Engine, ctx: CycleContext, lapsed: Sequence[tuple[Profile, Qualification]], writes: Writes
) -> None:
    """Queued people who are no longer sales-ready leave the queue with the reason shown."""
    queued = queue.items(engine.state, ctx, [p.key for p, _ in lapsed])
    threshold = engine.mapping.sales_ready.threshold
    for prof, q in lapsed:
        if prof.key not in queued:
            continue
        why = "; ".join(q.blockers) or _lapsed_why(engine, q, threshold)
        for person in (prof.hubspot, prof.salesforce):
            if person is not None and person.crm in engine.connectors and not person.converted_to:
                conn = engine.connectors[person.crm]
                values = handoff_values(conn, STATUS_LAPSED, why, q.score, "", ctx.now)
                writes.put(person.crm, person.id, person.object_type, values)


def _lapsed_why(engine: Engine, q: Qualification, threshold: int) -> str:
    """Why a queued person is no longer sales-ready though nothing blocks them."""
    why = f"score {q.score} of {threshold}: qualifying activity left its window"
    return f"{why}; nearest: {q.next_step}" if engine.mapping.sales_ready.definitions else why


def _missing_write(engine: Engine, prof: Profile, q: Qualification, writes: Writes) -> None:
    """What the person still needs to be sales-ready, on the HubSpot contact (``crm_handoff_missing``,
    empty once sales-ready), for marketing's nurture to aim at; written only when it changed, and
    only for people with some fit or behaviour (score above 0): a portal's cold contacts are not
    all written (that would cost a write and a re-read of every contact)."""
    hs, conn = prof.hubspot, engine.connectors.get("hubspot")
    name = conn.handoff_fields.get("missing") if conn is not None else None
    if hs is None or name is None:
        return
    value = q.next_step[:1000] if q.score > 0 else ""
    if (hs.values.get(name) or "") != value:
        writes.put("hubspot", hs.id, hs.object_type, {name: value})


def _sync_writes(engine: Engine, prof: Profile, writes: Writes) -> None:
    """Field-sync writes, cross-links, and stage outcomes flowing between the CRMs."""
    hs, sf = prof.hubspot, prof.salesforce
    mapping = engine.mapping
    lc = mapping.lifecycle
    ahead = prof.stage is not None and prof.stage in lc.funnel
    if hs and "hubspot" in engine.connectors:
        values: dict[str, Any] = dict(prof.to_hubspot)
        if sf and hs.linked_id != sf.id:
            values[engine.connectors["hubspot"].handoff_fields["link"]] = sf.id
        if ahead and prof.stage != prof.hubspot_stage:  # backward only where allowed (may_move)
            values |= stage_values(mapping, "hubspot", hs, prof.hubspot_stage, str(prof.stage), writes)
        writes.put("hubspot", hs.id, hs.object_type, values)
    if sf and "salesforce" in engine.connectors and not sf.converted_to:
        values = {k: v for k, v in prof.to_salesforce.items() if not (k == "Email" and not v)}
        if hs and sf.linked_id != hs.id:
            values[engine.connectors["salesforce"].handoff_fields["link"]] = hs.id
        if ahead and funnel_rank(lc, prof.stage) > funnel_rank(lc, prof.salesforce_stage):
            values |= stage_values(mapping, "salesforce", sf, prof.salesforce_stage, str(prof.stage), writes)
        writes.put("salesforce", sf.id, sf.object_type, values)


def entered(profiles: Mapping[str, Profile]) -> dict[str, datetime]:
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
