"""What became of each handoff (``outcomes``): one row per handoff key, kept by ``sync.followup``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update

from sync.state.base import _Store
from sync.state.rows import _insert_new, _parts, _utc
from sync.state.tables import identities, ledger, outcomes, people, stage_history

#: Outcome states a rep can still act on (the SLA and the task are watched).
OPEN_STATES = ("open", "acted")


@dataclass(frozen=True)
class OutcomeRow:
    """One handoff's outcome as the state holds it (``outcomes`` table)."""

    key: str
    person_key: str
    rep_email: str
    assigned_at: datetime
    due_at: datetime | None
    state: str
    sla: str
    first_touch_at: datetime | None = None
    first_touch_kind: str | None = None
    completed_at: datetime | None = None
    outcome: str | None = None
    reason: str | None = None
    decided_at: datetime | None = None
    reassignments: int = 0
    next_key: str | None = None
    gave_back: bool = False
    late: str | None = None
    written: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the rep can still act on it (the task and SLA are watched)."""
        return self.state in OPEN_STATES


_TIMES = {"assigned_at", "due_at", "first_touch_at", "completed_at", "decided_at"}
_FIELDS = [f.name for f in fields(OutcomeRow)]


def _row(r: Any) -> OutcomeRow:
    values = {name: getattr(r, name) for name in _FIELDS}
    for name in _TIMES:
        values[name] = _utc(values[name])
    return OutcomeRow(**values)


class OutcomeStore(_Store):
    """The ``outcomes`` table: opened for every confirmed handoff, updated as reps act."""

    def handoffs_without_outcome(self, limit: int = 5000) -> list[tuple[str, str, str, datetime]]:
        """Confirmed handoffs with no outcome row yet: (key, person key, rep email, assigned at)."""
        assigned = func.min(func.coalesce(ledger.c.confirmed_at, ledger.c.planned_at))
        q = (
            select(ledger.c.key, func.min(ledger.c.person_key), func.min(ledger.c.rep_email), assigned)
            .outerjoin(outcomes, outcomes.c.key == ledger.c.key)
            .where(ledger.c.status == "done", outcomes.c.key.is_(None))
            .group_by(ledger.c.key)
            .order_by(ledger.c.key)
            .limit(limit)
        )
        with self._connect() as conn:
            return [(k, p, r, _utc(a) or a) for k, p, r, a in conn.execute(q)]

    def open_outcomes(self, rows: Sequence[OutcomeRow], at: datetime) -> None:
        """Insert outcome rows (those already there are left as they are)."""
        values = [{name: getattr(r, name) for name in _FIELDS} | {"updated_at": at} for r in rows]
        if not values:
            return
        with self._begin() as conn:
            for part in _parts(values):
                _insert_new(conn, outcomes, part)

    def outcomes_by_keys(self, keys: Sequence[str]) -> dict[str, OutcomeRow]:
        """Outcome rows by handoff key."""
        out: dict[str, OutcomeRow] = {}
        with self._connect() as conn:
            for part in _parts(sorted(set(keys))):
                out |= {
                    r.key: _row(r) for r in conn.execute(select(outcomes).where(outcomes.c.key.in_(part)))
                }
        return out

    def outcomes_for_people(self, person_keys: Sequence[str], only_open: bool = False) -> list[OutcomeRow]:
        """Every outcome row of these people (``only_open``: those still watched)."""
        rows: list[OutcomeRow] = []
        with self._connect() as conn:
            for part in _parts(sorted(set(person_keys))):
                q = select(outcomes).where(outcomes.c.person_key.in_(part))
                if only_open:
                    q = q.where(outcomes.c.state.in_(OPEN_STATES))
                rows += [_row(r) for r in conn.execute(q)]
        return rows

    def oldest_open_outcome(self) -> datetime | None:
        """When the oldest handoff still watched was assigned (None: none is)."""
        q = select(func.min(outcomes.c.assigned_at)).where(outcomes.c.state.in_(OPEN_STATES))
        with self._connect() as conn:
            return _utc(conn.execute(q).scalar_one_or_none())

    def due_outcomes(
        self, now: datetime, after: tuple[datetime, str] | None = None, limit: int = 5000
    ) -> list[OutcomeRow]:
        """Open, untouched handoffs whose first touch was due by ``now``, in (due, key) order
        after ``after`` (keyset paging)."""
        q = select(outcomes).where(
            outcomes.c.state == "open", outcomes.c.sla == "open", outcomes.c.due_at <= now
        )
        if after is not None:
            at, key = after
            q = q.where(or_(outcomes.c.due_at > at, and_(outcomes.c.due_at == at, outcomes.c.key > key)))
        q = q.order_by(outcomes.c.due_at, outcomes.c.key).limit(limit)
        with self._connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def untouched_changed(self, crm: str, since: datetime, limit: int = 5000) -> list[tuple[OutcomeRow, str]]:
        """Open, untouched handoffs whose person's ``crm`` record changed at/after ``since``:
        (row, that record's id), from the mirror (no CRM call)."""
        id_col = identities.c.hubspot_id if crm == "hubspot" else identities.c.salesforce_id
        q = (
            select(outcomes, id_col.label("record_id"))
            .join(identities, identities.c.person_key == outcomes.c.person_key)
            .join(people, and_(people.c.crm == crm, people.c.id == id_col))
            .where(
                outcomes.c.state == "open",
                outcomes.c.first_touch_at.is_(None),
                people.c.modified_at >= since,
            )
            .limit(limit)
        )
        with self._connect() as conn:
            return [(_row(r), str(r.record_id)) for r in conn.execute(q)]

    def save_outcomes(self, changes: Mapping[str, Mapping[str, Any]], at: datetime) -> None:
        """Update outcome rows: handoff key -> the columns that changed, one transaction."""
        if not changes:
            return
        with self._begin() as conn:
            for key, values in changes.items():
                conn.execute(update(outcomes).where(outcomes.c.key == key).values(**values, updated_at=at))

    def outcome_rows(self, since: datetime | None = None) -> list[OutcomeRow]:
        """Every outcome row (assigned at/after ``since``), for reports."""
        q = select(outcomes).order_by(outcomes.c.assigned_at, outcomes.c.key)
        if since is not None:
            q = q.where(outcomes.c.assigned_at >= since)
        with self._connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def ledger_tasks(self, keys: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Handoff key -> its confirmed tasks as (CRM, task id)."""
        out: dict[str, list[tuple[str, str]]] = {}
        stmt = select(ledger.c.key, ledger.c.crm, ledger.c.task_id).where(
            ledger.c.key.in_(bindparam("keys", expanding=True)), ledger.c.status == "done"
        )
        with self._connect() as conn:
            for part in _parts(sorted(set(keys))):
                for key, crm, task_id in conn.execute(stmt, {"keys": part}):
                    if task_id:
                        out.setdefault(key, []).append((crm, task_id))
        return out

    def stage_entries_of(
        self, person_keys: Sequence[str], stages: Sequence[str]
    ) -> dict[str, list[tuple[str, datetime]]]:
        """Person key -> the recorded entries into these stages: (stage, entered at)."""
        out: dict[str, list[tuple[str, datetime]]] = {}
        with self._connect() as conn:
            for part in _parts(sorted(set(person_keys))):
                q = select(stage_history).where(
                    stage_history.c.person_key.in_(part), stage_history.c.stage.in_(list(stages))
                )
                for r in conn.execute(q):
                    out.setdefault(r.person_key, []).append((r.stage, _utc(r.entered_at) or r.entered_at))
        return out

    def ledger_has(self, keys: Sequence[str]) -> dict[str, str]:
        """Of these handoff keys, those the ledger holds (any status): key -> rep email."""
        out: dict[str, str] = {}
        with self._connect() as conn:
            for part in _parts(sorted(set(keys))):
                q = select(ledger.c.key, ledger.c.rep_email).where(ledger.c.key.in_(part))
                out |= {k: r for k, r in conn.execute(q)}
        return out
