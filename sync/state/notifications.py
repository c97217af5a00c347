"""The notification outbox (``notifications``): a message per handoff key, kind and channel,
recorded when the handoff is confirmed (or the breach decided), pending until sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from sync.state.base import _Store
from sync.state.rows import _insert_new, _parts, _utc
from sync.state.tables import ledger, notifications


@dataclass(frozen=True)
class Notice:
    """One message in the outbox."""

    key: str  # the handoff's ledger key
    kind: str  # handoff | breach
    channel: str  # slack | email
    rep_email: str
    target: str  # the address, or the environment variable holding the webhook URL
    subject: str
    body: str
    link: str | None = None
    status: str = "pending"  # pending | sent | failed
    attempts: int = 0
    error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None

    @property
    def ident(self) -> tuple[str, str, str]:
        """The outbox key: (handoff key, kind, channel)."""
        return (self.key, self.kind, self.channel)


def _notice(r: Any) -> Notice:
    values = dict(r._mapping)
    values["created_at"], values["sent_at"] = _utc(values["created_at"]), _utc(values["sent_at"])
    return Notice(**values)


class NotificationStore(_Store):
    """The outbox: queued once per (key, kind, channel), sent after, marked sent or failed."""

    def queue_notices(self, notices: Sequence[Notice], at: datetime) -> None:
        """Record messages to send; one already recorded (sent or not) is left as it is."""
        rows = {
            n.ident: {
                "key": n.key,
                "kind": n.kind,
                "channel": n.channel,
                "rep_email": n.rep_email,
                "target": n.target[:320],
                "subject": n.subject,
                "body": n.body,
                "link": n.link,
                "status": "pending",
                "attempts": 0,
                "created_at": at,
            }
            for n in notices
        }
        with self._begin() as conn:
            for part in _parts(list(rows.values())):
                _insert_new(conn, notifications, part)

    def pending_notices(self, limit: int) -> list[Notice]:
        """Up to ``limit`` unsent messages, oldest first."""
        t = notifications
        q = (
            select(t)
            .where(t.c.status == "pending")
            .order_by(t.c.created_at, t.c.key, t.c.kind, t.c.channel)
            .limit(limit)
        )
        with self._connect() as conn:
            return [_notice(r) for r in conn.execute(q)]

    def notice_sent(self, ident: tuple[str, str, str], at: datetime) -> None:
        """The message went out: it is never sent again."""
        self._set(ident, status="sent", sent_at=at, error=None)

    def notice_failed(self, ident: tuple[str, str, str], attempts: int, error: str, give_up: bool) -> None:
        """A try failed: retried next cycle, or (``give_up``) failed for good."""
        self._set(ident, status="failed" if give_up else "pending", attempts=attempts, error=error[:1000])

    def _set(self, ident: tuple[str, str, str], **values: Any) -> None:
        t = notifications
        key, kind, channel = ident
        with self._begin() as conn:
            conn.execute(
                update(t).where(t.c.key == key, t.c.kind == kind, t.c.channel == channel).values(**values)
            )

    def notices(self, key: str | None = None) -> list[Notice]:
        """Every message in the outbox (``handoff status``, tests), oldest first."""
        t = notifications
        q = select(t).order_by(t.c.created_at, t.c.key, t.c.kind, t.c.channel)
        if key is not None:
            q = q.where(t.c.key == key)
        with self._connect() as conn:
            return [_notice(r) for r in conn.execute(q)]

    def handoff_tasks(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The task each handoff wrote (subject, body, due, person), by key: its first CRM's."""
        out: dict[str, dict[str, Any]] = {}
        with self._connect() as conn:
            for part in _parts(sorted(set(keys))):
                q = select(ledger.c.key, ledger.c.crm, ledger.c.payload).where(ledger.c.key.in_(part))
                for key, crm, payload in conn.execute(q.order_by(ledger.c.key, ledger.c.crm)):
                    if payload and key not in out:
                        out[key] = {"crm": crm, **payload}
        return out
