"""The handoff ledger: one entry per handoff and CRM, intent -> done | failed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from sync.state.base import _Store
from sync.state.rows import (
    _content_payload,
    _entry,
    _parts,
    _task_payload,
)
from sync.state.tables import (
    ledger,
    outcomes,
)
from sync.state.types import LedgerEntry


class LedgerStore(_Store):
    """The handoff ledger: one entry per handoff and CRM, intent -> done | failed."""

    def ledger_for_people(self, person_keys: Sequence[str]) -> list[LedgerEntry]:
        with self._connect() as conn:
            rows: list[Any] = []
            for part in _parts(list(person_keys)):
                rows += conn.execute(select(ledger).where(ledger.c.person_key.in_(part))).all()
        return [_entry(r) for r in rows]

    def open_intents(self) -> list[LedgerEntry]:
        with self._connect() as conn:
            rows = conn.execute(select(ledger).where(ledger.c.status == "intent")).all()
        return [_entry(r) for r in rows]

    def used_capacity(self, weeks: dict[str, date]) -> dict[str, int]:
        """Handoffs (any status but failed) per rep email in that rep's current week: each
        counts against the week it was assigned in, whatever happens to it after, except one
        rejected soon enough to give the slot back (``outcomes.gave_back``)."""
        out: dict[str, int] = {}
        with self._connect() as conn:
            for email, week in weeks.items():
                count = conn.execute(
                    select(func.count(func.distinct(ledger.c.key)))
                    .select_from(ledger.outerjoin(outcomes, outcomes.c.key == ledger.c.key))
                    .where(
                        ledger.c.rep_email == email,
                        ledger.c.week_start == week,
                        ledger.c.status != "failed",
                        or_(outcomes.c.gave_back.is_(None), outcomes.c.gave_back.is_(False)),
                    )
                ).scalar_one()
                out[email] = int(count)
        return out

    def record_intents(self, entries: Sequence[LedgerEntry], run_id: int | None) -> None:
        """Record handoffs about to be written, before any CRM write (idempotent).

        One transaction: entries an earlier, interrupted run already recorded are left
        as they are; the others are inserted together (row by row if a concurrent
        writer got there first).
        """
        rows = {
            (e.key, e.crm): {
                "key": e.key,
                "crm": e.crm,
                "person_key": e.person_key,
                "episode": e.episode,
                "rep_email": e.rep_email,
                "week_start": e.week_start,
                "status": "intent",
                "score": e.score,
                "reasons": e.reasons,
                "payload": _task_payload(e.task) | _content_payload(e.content),
                "planned_at": e.planned_at,
                "run_id": run_id,
            }
            for e in entries
        }
        if not rows:
            return
        with self._begin() as conn:
            for part in _parts(sorted({k for k, _ in rows})):
                for key, crm in conn.execute(
                    select(ledger.c.key, ledger.c.crm).where(ledger.c.key.in_(part))
                ):
                    rows.pop((key, crm), None)
            if not rows:
                return
            try:
                with conn.begin_nested():
                    conn.execute(insert(ledger), list(rows.values()))
            except IntegrityError:
                for row in rows.values():
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(ledger).values(**row))
                    except IntegrityError:
                        pass  # already recorded

    def confirm(self, key: str, crm: str, task_id: str, at: datetime) -> None:
        self.confirm_many([(key, crm, task_id)], at)

    def confirm_many(self, done: Sequence[tuple[str, str, str]], at: datetime) -> None:
        """Mark ``(key, crm, task_id)`` handoffs done, in one transaction."""
        if not done:
            return
        stmt = (
            update(ledger)
            .where(ledger.c.key == bindparam("b_key"), ledger.c.crm == bindparam("b_crm"))
            .values(status="done", task_id=bindparam("b_task"), confirmed_at=at, error=None)
        )
        with self._begin() as conn:
            conn.execute(stmt, [{"b_key": k, "b_crm": c, "b_task": t} for k, c, t in done])

    def fail(self, key: str, crm: str, error: str) -> None:
        with self._begin() as conn:
            conn.execute(
                update(ledger)
                .where(ledger.c.key == key, ledger.c.crm == crm)
                .values(status="failed", error=error)
            )

    def ledger_entries(self, limit: int | None = None) -> list[LedgerEntry]:
        with self._connect() as conn:
            q = select(ledger).order_by(ledger.c.planned_at.desc())
            if limit:
                q = q.limit(limit)
            return [_entry(r) for r in conn.execute(q)]
