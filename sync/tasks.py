"""Exactly-once handoff tasks (part of stage 4, execute).

Order of handoff writes, chosen so a crash at any point followed by a rerun leaves
exactly one task per handoff: (1) people missing in the rep's CRM are created, keyed
by the other CRM's id (idempotent upsert); (2) ledger *intents* are committed, each with
its task request; (3) tasks are written (Salesforce: external-id upsert; HubSpot: intents
from earlier runs are looked up by key, only missing tasks are created); (4) the ledger
is confirmed once the people are marked handed off (``sync.execute``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import Connector
from crm_handoff.records import Person, PersonCreate, TaskRequest, WriteResult
from sync.context import CycleContext, PlannedHandoff, reasons_json, record_error
from sync.engine import Engine
from sync.profiles import Profile
from sync.routing import week_start
from sync.state import LedgerEntry


def create_missing_people(engine: Engine, ctx: CycleContext, handoffs: Sequence[PlannedHandoff]) -> None:
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
        record_error(engine.state, ctx, crm, f"create for {h.profile.key}", reason)
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


def intents(engine: Engine, ctx: CycleContext, handoffs: Sequence[PlannedHandoff]) -> list[LedgerEntry]:
    entries = []
    for h in handoffs:
        for crm in h.task_crms:
            person = getattr(h.profile, crm)
            if person is None:
                continue
            task = TaskRequest(
                key=h.key,
                person_id=person.id,
                person_type=person.object_type,
                owner_id=ctx.owner_ids(crm)[h.rep.email],
                subject=h.brief.subject,
                body=h.brief.body,
                due=h.brief.due,
                priority=engine.mapping.handoff.priority,
            )
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
                    task=task,
                    content=h.brief.content,
                )
            )
    return entries


def write_tasks(
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
    todo = [e.task for e in mine if e.key not in existing and e.task is not None]
    for res in conn.write_tasks(todo) if todo else []:
        if res.ok and res.crm_id:
            written.append((res.key, crm, res.crm_id))
            ctx.count("tasks_created" if res.created is not False else "tasks_existing", crm)
            done.add(res.key)
        else:
            engine.state.fail(res.key, crm, res.error or "rejected")
            record_error(engine.state, ctx, crm, f"task {res.key}", res.error or "rejected")
    return done
