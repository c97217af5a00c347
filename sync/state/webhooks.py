"""Webhook deliveries as received: one row per event, de-duplicated by the CRM's event id,
pending until a micro-cycle has read and evaluated the people it names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from sync.state.base import _Store
from sync.state.rows import _insert_new, _parts, _utc
from sync.state.tables import webhook_deliveries


@dataclass(frozen=True)
class ReceivedEvent:
    """One event of a delivery, as the receiver stores it."""

    event_id: str
    kind: str  # the subscription type, e.g. contact.propertyChange
    object_id: str
    people: tuple[str, ...]  # record ids to read again
    occurred_at: datetime | None
    event: dict[str, Any]  # as the CRM sent it


@dataclass(frozen=True)
class PendingEvent:
    """A stored event no micro-cycle has processed yet."""

    crm: str
    event_id: str
    people: tuple[str, ...]
    received_at: datetime


class WebhookStore(_Store):
    """Webhook deliveries: stored before the answer, processed once."""

    def store_events(self, crm: str, events: Sequence[ReceivedEvent], at: datetime) -> int:
        """Store a delivery's events in one transaction; an event id seen before (a retry,
        a duplicate) is not stored again. Returns how many were new."""
        rows = {
            e.event_id: {
                "crm": crm,
                "event_id": e.event_id,
                "kind": e.kind[:64],
                "object_id": e.object_id[:32],
                "people": list(e.people),
                "occurred_at": e.occurred_at,
                "received_at": at,
                "event": e.event,
            }
            for e in events
        }
        if not rows:
            return 0
        t = webhook_deliveries
        with self._begin() as conn:
            seen: set[str] = set()
            for part in _parts(sorted(rows)):
                seen |= set(
                    conn.execute(select(t.c.event_id).where(t.c.crm == crm, t.c.event_id.in_(part))).scalars()
                )
            new = [row for key, row in rows.items() if key not in seen]
            for part in _parts(new):
                _insert_new(conn, t, part)
        return len(new)

    def pending_events(self, crm: str, received_by: datetime, limit: int) -> list[PendingEvent]:
        """Up to ``limit`` unprocessed events from ``crm`` received by ``received_by``, oldest first."""
        t = webhook_deliveries
        q = (
            select(t.c.crm, t.c.event_id, t.c.people, t.c.received_at)
            .where(t.c.processed_at.is_(None), t.c.crm == crm, t.c.received_at <= received_by)
            .order_by(t.c.received_at, t.c.crm, t.c.event_id)
            .limit(limit)
        )
        with self._connect() as conn:
            rows = conn.execute(q).all()
        return [
            PendingEvent(r.crm, r.event_id, tuple(str(p) for p in r.people or ()), _utc(r.received_at))  # type: ignore[arg-type]
            for r in rows
        ]

    def pending_event_count(self) -> int:
        """Events stored and not yet processed."""
        t = webhook_deliveries
        with self._connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(t).where(t.c.processed_at.is_(None))).scalar()
                or 0
            )

    def events_processed(self, crm: str, event_ids: Sequence[str], at: datetime) -> None:
        """These events' people are evaluated (and their writes done): processed."""
        t = webhook_deliveries
        with self._begin() as conn:
            for part in _parts(sorted(set(event_ids))):
                conn.execute(update(t).where(t.c.crm == crm, t.c.event_id.in_(part)).values(processed_at=at))

    def webhook_events(self, crm: str | None = None) -> list[dict[str, Any]]:
        """Every stored event (``handoff status``, tests), oldest first."""
        t = webhook_deliveries
        q = select(t).order_by(t.c.received_at, t.c.event_id)
        if crm is not None:
            q = q.where(t.c.crm == crm)
        with self._connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def prune_events(self, processed_before: datetime) -> int:
        """Forget processed events older than ``processed_before`` (their ids no longer
        needed to recognise a retry: HubSpot retries for 24 hours)."""
        t = webhook_deliveries
        with self._begin() as conn:
            res = conn.execute(delete(t).where(t.c.processed_at < processed_before))
            return int(res.rowcount or 0)
