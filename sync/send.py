"""Sending field writes to the CRMs (part of stage 4, execute) and mirroring what was written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from crm_handoff.records import Person, PersonUpdate, WriteResult
from sync.context import CycleContext, record_error
from sync.engine import Engine
from sync.writes import Writes


def send(
    engine: Engine, ctx: CycleContext, writes: Writes, mirror: bool = True
) -> dict[str, dict[str, dict[str, Any]]]:
    """Send the writes, each CRM's on a thread of its own (the calls overlap); the results
    are then recorded on this thread, in CRM order. Returns the values written, by CRM and
    person id; ``mirror``: also applied to the mirror now."""
    jobs: dict[str, tuple[list[PersonUpdate], list[PersonUpdate]]] = {}
    for crm in engine.connectors:
        clear = [
            PersonUpdate(pid, ot, {"lifecyclestage": ""}) for (c, pid, ot) in writes.clear_first if c == crm
        ]
        updates = [PersonUpdate(pid, ot, vals) for (c, pid, ot), vals in writes.values.items() if c == crm]
        if clear or updates:
            jobs[crm] = (clear, updates)

    def one(crm: str) -> tuple[list[WriteResult], list[WriteResult]]:
        conn = engine.connectors[crm]
        clear, updates = jobs[crm]
        cleared = conn.update_people(clear) if clear else []
        return cleared, (conn.update_people(updates) if updates else [])

    if len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="writes") as pool:
            futures = {crm: pool.submit(one, crm) for crm in jobs}
        done = {crm: f.result() for crm, f in futures.items()}  # the first CRM's error, if any
    else:
        done = {crm: one(crm) for crm in jobs}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for crm, (cleared, results) in done.items():
        out[crm] = _record(engine, ctx, crm, writes, jobs[crm][1], cleared, results)
        if mirror:
            mirror_written(engine, crm, out[crm], {})
    return out


def _record(
    engine: Engine,
    ctx: CycleContext,
    crm: str,
    writes: Writes,
    updates: Sequence[PersonUpdate],
    cleared: Sequence[WriteResult],
    results: Sequence[WriteResult],
) -> dict[str, dict[str, Any]]:
    """One CRM's person-write results: rejections recorded; the values written, by person id."""
    for res in cleared:
        if not res.ok:
            record_error(engine.state, ctx, crm, f"person {res.key}", res.error or "rejected")
    written: dict[str, dict[str, Any]] = {}
    types = {u.person_id: u.object_type for u in reversed(updates)}  # the first, as before
    for res in results:
        if res.ok:
            ctx.count("updated", crm)
            written[res.key] = writes.values[(crm, res.key, types[res.key])]
        else:
            record_error(engine.state, ctx, crm, f"person {res.key}", res.error or "rejected")
    return written


def mirror_written(
    engine: Engine, crm: str, written: dict[str, dict[str, Any]], known: Mapping[tuple[str, str], Person]
) -> None:
    """Our own writes go into the mirror too, so the next chunk or cycle does not decide
    (and write) them again from a stale copy."""
    if not written:
        return
    conn = engine.connectors[crm]
    link, owner = conn.handoff_fields["link"], conn.owner_field
    state = engine.state
    with state.batch(lazy_sync=True):  # a cache: the next ordinary commit makes it durable
        mirrored = [known[(crm, pid)] for pid in written if (crm, pid) in known]  # as just saved
        mirrored += state.people_by_ids(crm, [pid for pid in written if (crm, pid) not in known])
        fresh = []
        for person in mirrored:
            values = {k: None if v is None else str(v) for k, v in written[person.id].items()}
            fresh.append(
                replace(
                    person,
                    values={**person.values, **values},
                    linked_id=values.get(link, person.linked_id),
                    owner_id=values.get(owner, person.owner_id),
                )
            )
        state.save_people(fresh)
