"""Leases in the state database: one replica at a time runs a job, another takes over.

A lease is a row (job name, holder, expiry). ``acquire`` takes it by one conditional
UPDATE (free, expired, or already mine) or an INSERT when no row exists, in one
transaction, so it is safe on SQLite and PostgreSQL alike. While the job runs, a
heartbeat thread renews it every third of the TTL; a holder that dies stops renewing
and another replica takes the lease once it expires: takeover is bounded by the TTL
plus the schedule interval. Replicas compare expiries with their own UTC clocks, so
keep them NTP-synced (skew well below the TTL).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

import structlog
from sqlalchemy import Column, DateTime, Engine, String, Table, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from sync.state import _utc, metadata

log = structlog.get_logger("handoff.lease")

leases = Table(
    "leases",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def default_holder() -> str:
    """``host:pid:random``: unique per process, and says where the holder runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def holder_pid(holder: str) -> int | None:
    """The process id in a default holder name (None for a custom one)."""
    parts = holder.split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


@dataclass(frozen=True)
class LeaseState:
    """The outcome of an acquire: who holds the lease now and until when."""

    acquired: bool
    holder: str | None
    expires_at: datetime | None
    previous: str | None = None  # the holder whose expired lease was taken over

    def reason(self) -> str:
        """Why the lease was not acquired, for logs and ``handoff status``."""
        until = self.expires_at.isoformat(timespec="seconds") if self.expires_at else "?"
        return f"lease held by {self.holder} until {until}"


class Leases:
    """Acquire, renew and release named leases in the state database."""

    def __init__(self, engine: Engine, clock: Clock = _now) -> None:
        self.engine = engine
        self.clock = clock

    def acquire(self, name: str, holder: str, ttl: float) -> LeaseState:
        """Take the lease if it is free, expired or already ours; else report the holder."""
        now = self.clock()
        expires = now + timedelta(seconds=ttl)
        with self.engine.begin() as conn:
            row = conn.execute(select(leases).where(leases.c.name == name)).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(leases).values(
                                name=name, holder=holder, acquired_at=now, expires_at=expires
                            )
                        )
                    return LeaseState(True, holder, expires)
                except IntegrityError:
                    row = None  # another replica inserted first: fall through to the update
            taken = conn.execute(
                update(leases)
                .where(leases.c.name == name, or_(leases.c.holder == holder, leases.c.expires_at < now))
                .values(holder=holder, expires_at=expires, acquired_at=now)
            ).rowcount
            if taken == 1:
                previous = row.holder if row is not None and row.holder != holder else None
                return LeaseState(True, holder, expires, previous)
            current = conn.execute(select(leases).where(leases.c.name == name)).first()
        if current is None:
            return LeaseState(False, None, None)
        return LeaseState(False, current.holder, _utc(current.expires_at))

    def renew(self, name: str, holder: str, ttl: float) -> bool:
        """Extend our lease; False when it is no longer ours."""
        expires = self.clock() + timedelta(seconds=ttl)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == holder)
                .values(expires_at=expires)
            ).rowcount
        return done == 1

    def release(self, name: str, holder: str) -> None:
        """Give the lease up (only if it is still ours)."""
        with self.engine.begin() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    def holder(self, name: str) -> tuple[str, datetime] | None:
        """The current holder and expiry of a lease, if any row exists."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
            ).first()
        return (row.holder, _utc(row.expires_at) or self.clock()) if row else None


class Heartbeat:
    """Renews a held lease every ``ttl / 3`` seconds until closed; ``lost`` is set if it fails."""

    def __init__(self, leases_: Leases, name: str, holder: str, ttl: float) -> None:
        self.leases, self.name, self.holder, self.ttl = leases_, name, holder, ttl
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{name}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                ok = self.leases.renew(self.name, self.holder, self.ttl)
            except Exception as exc:  # a database hiccup: try again next beat
                log.warning("lease_renew_failed", lease=self.name, error=type(exc).__name__)
                continue
            if not ok:
                self.lost.set()
                log.error("lease_lost", lease=self.name, holder=self.holder)
                return
