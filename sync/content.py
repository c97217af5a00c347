"""Content usage: which recommended assets the leads then opened (``handoff report``'s ``content``).

A handoff's brief records the assets it recommends on its ledger rows (the payload's
``content``: id, version, url). An asset recommended to a lead counts as *used* once
the lead's activity after the handoff opens its url: an email click on it, a page view
or a download whose title holds it (``mappings.content.urls_in``). Each handoff counts
once per asset (a handoff with a task in both CRMs, or reassigned, is one handoff).
Activity older than the behaviour window leaves the state (``Executor.prune``), so a use
is counted while the activity that shows it is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from mappings.content import current, norm_url, urls_in
from mappings.models import ContentAsset, MappingSet
from sync.state import StateStore
from sync.state.rows import _parts, _utc
from sync.state.tables import activities, identities, ledger

_REASSIGNED = re.compile(r"(\.r\d+)+$")
BASIS = (
    "an asset counts as recommended once per handoff whose brief named it (in both CRMs or reassigned, "
    "it is one handoff), and as used when the lead's activity after the handoff opens its url (an email "
    "click, a page view or a download naming it)"
)


@dataclass(frozen=True)
class Recommended:
    """One asset one handoff's brief recommended."""

    handoff: str
    person_key: str
    at: datetime
    id: str
    version: int
    url: str


def recommendations(state: StateStore) -> Iterator[Recommended]:
    """Every asset a written handoff recommended (status done), once per handoff: a handoff
    in both CRMs, and its reassignments (``<key>.rN``), count as the first one."""
    seen: set[tuple[str, str, int]] = set()
    q = select(ledger.c.key, ledger.c.person_key, ledger.c.planned_at, ledger.c.payload).where(
        ledger.c.status == "done"
    )
    with state.engine.connect() as conn:
        for key, person_key, planned_at, payload in conn.execute(q.order_by(ledger.c.key)):
            base, at = _REASSIGNED.sub("", key), _utc(planned_at)
            for c in (payload or {}).get("content") or []:
                asset = (base, str(c["id"]), int(c["version"]))
                if at is not None and asset not in seen:
                    seen.add(asset)
                    yield Recommended(base, person_key, at, asset[1], asset[2], str(c["url"]))


def _refs(state: StateStore, person_keys: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Person key -> the CRM ids and email their activity is stored under."""
    out: dict[str, tuple[str, ...]] = {}
    with state.engine.connect() as conn:
        for part in _parts(sorted(set(person_keys))):
            q = select(identities).where(identities.c.person_key.in_(part))
            for r in conn.execute(q):
                out[r.person_key] = tuple(x for x in (r.hubspot_id, r.salesforce_id, r.email) if x)
    return out


def _activity(
    state: StateStore, ids: Sequence[str], emails: Sequence[str], since: datetime, hosts: Sequence[str]
) -> list[tuple[str, datetime, str]]:
    """(person id or email, when, title) of the activity since ``since`` of these people whose
    title names one of ``hosts`` (the rest cannot open a recommended url)."""
    out: list[tuple[str, datetime, str]] = []
    on_host = or_(*(activities.c.title.contains(h, autoescape=True) for h in hosts))
    with state.engine.connect() as conn:
        for column, values in ((activities.c.person_id, ids), (activities.c.email, emails)):
            for part in _parts(sorted(set(values))):
                q = select(column, activities.c.occurred_at, activities.c.title).where(
                    activities.c.occurred_at >= since, column.in_(part), on_host
                )
                out += [(ref, _utc(at) or since, title) for ref, at, title in conn.execute(q)]
    return out


def used(state: StateStore, recs: Sequence[Recommended]) -> set[tuple[str, str, int]]:
    """(handoff, id, version) of the recommendations the lead then opened."""
    out: set[tuple[str, str, int]] = set()
    for part in _parts(list(recs), 1000):
        refs = _refs(state, [r.person_key for r in part])
        hosts = sorted({norm_url(r.url).split("/", 1)[0] for r in part} - {""})
        ids = [i for r in refs.values() for i in r if "@" not in i]
        emails = [i.lower() for r in refs.values() for i in r if "@" in i]
        by_ref: dict[str, list[tuple[datetime, str]]] = {}
        for ref, at, title in _activity(state, ids, emails, min(r.at for r in part), hosts) if hosts else []:
            by_ref.setdefault(ref, []).append((at, title))
        for r in part:
            seen = {(at, title) for ref in refs.get(r.person_key, ()) for at, title in by_ref.get(ref, [])}
            if any(at >= r.at and norm_url(r.url) in urls_in(title) for at, title in seen):
                out.add((r.handoff, r.id, r.version))
    return out


def _status(asset: ContentAsset, live: set[tuple[str, int]]) -> str:
    if asset.retired:
        return "retired"
    return "current" if (asset.key, asset.version) in live else "superseded"


def content_figures(state: StateStore, mapping: MappingSet) -> dict[str, Any]:
    """Per asset (id and version): handoffs that recommended it and how many the lead used;
    the assets never recommended and those recommended but never used."""
    recs = list(recommendations(state))
    opened = used(state, recs)
    library = mapping.handoff.assets
    live = {(a.key, a.version) for a in current(library)}
    rows: dict[tuple[str, int], dict[str, Any]] = {
        (a.key, a.version): {
            "id": a.key,
            "version": a.version,
            "title": a.title,
            "gate": a.gate or "",
            "status": _status(a, live),
            "recommended": 0,
            "used": 0,
        }
        for a in library
    }
    for r in recs:
        row = rows.setdefault(
            (r.id, r.version),
            {
                "id": r.id,
                "version": r.version,
                "title": r.id,
                "gate": "",
                "status": "not in the library",
                "recommended": 0,
                "used": 0,
            },
        )
        row["recommended"] += 1
        row["used"] += (r.handoff, r.id, r.version) in opened
    assets = list(rows.values())
    return {
        "basis": BASIS,
        "handoffs": len({r.handoff for r in recs}),
        "recommended": len(recs),
        "used": len(opened),
        "assets": assets,
        "never_recommended": [a["id"] for a in assets if not a["recommended"] and a["status"] == "current"],
        "never_used": [a["id"] for a in assets if a["recommended"] and not a["used"]],
    }
