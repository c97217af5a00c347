"""Activities inside the scoring window."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import (
    delete,
    insert,
    select,
)

from crm_handoff.records import Activity
from sync.state.base import _Store
from sync.state.rows import (
    _parts,
    _utc,
)
from sync.state.tables import (
    activities,
)


class ActivityStore(_Store):
    """Activities inside the scoring window."""

    def save_activities(self, items: Iterable[Activity]) -> int:
        """Store activities (idempotent by crm + id); returns how many were new."""
        new = 0
        with self._begin() as conn:
            for part in _parts(list(items), 500):
                ids = {(a.crm, a.id) for a in part}
                seen = {
                    (crm, aid)
                    for crm, aid in conn.execute(
                        select(activities.c.crm, activities.c.activity_id).where(
                            activities.c.activity_id.in_([i for _, i in ids])
                        )
                    )
                }
                rows = [
                    {
                        "crm": a.crm,
                        "activity_id": a.id,
                        "kind": a.kind,
                        "occurred_at": a.occurred_at,
                        "person_id": a.person_id,
                        "email": a.email.lower() if a.email else None,
                        "title": a.title[:500],
                    }
                    for a in {(a.crm, a.id): a for a in part}.values()
                    if (a.crm, a.id) not in seen
                ]
                if rows:
                    conn.execute(insert(activities), rows)
                    new += len(rows)
        return new

    def activities_for(
        self, person_ids: Sequence[str], emails: Sequence[str], since: datetime
    ) -> list[Activity]:
        """Activities since ``since`` of any of the person ids or emails (each once).

        Ids and emails are queried separately (an ``a OR b`` over two ``IN`` lists would
        pair every id part with every email part and read each row many times).
        """
        found: dict[tuple[str, str], Activity] = {}
        with self._connect() as conn:
            for column, values in (
                (activities.c.person_id, sorted(set(person_ids))),
                (activities.c.email, sorted({e.lower() for e in emails})),
            ):
                for part in _parts(values):
                    q = select(activities).where(activities.c.occurred_at >= since, column.in_(part))
                    for r in conn.execute(q):
                        if (r.crm, r.activity_id) in found:
                            continue
                        found[(r.crm, r.activity_id)] = Activity(
                            crm=r.crm,
                            id=r.activity_id,
                            kind=r.kind,
                            occurred_at=_utc(r.occurred_at) or since,
                            person_id=r.person_id,
                            email=r.email,
                            title=r.title,
                        )
        return list(found.values())

    def prune_activities(self, before: datetime) -> None:
        with self._begin() as conn:
            conn.execute(delete(activities).where(activities.c.occurred_at < before))
