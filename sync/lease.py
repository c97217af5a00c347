"""Leases in the state database: one replica at a time runs a job, another takes over.

A lease is a row (job name, holder, generation, expiry). ``acquire`` takes it by one
conditional UPDATE (free, expired, or already mine) or an INSERT when no row exists, in
one transaction, so it is safe on SQLite and PostgreSQL alike; every acquisition bumps
the row's *generation*, so holder + generation name one tenure. A new row's generation
starts at its creation time in milliseconds, so it does not go back when a released
lease's row is deleted and created again. While the job runs, a heartbeat thread
renews it every third of the TTL; a holder that dies stops renewing and another replica
takes the lease once it expires: takeover is bounded by the TTL plus the schedule
interval. Replicas compare expiries with their own UTC clocks, so keep them NTP-synced
(skew well below the TTL).

A holder that was paused (SIGSTOP, a VM freeze, a long GC) may resume after another
replica took over. Its :class:`Fence` stops it from writing: right before every CRM write
batch it renews the lease with one UPDATE conditional on holder *and* generation. That
succeeds only if no other replica acquired the lease since (any acquisition changes the
generation), whatever the clocks say, and then gives the batch a full TTL of lease;
otherwise the write is not sent and the cycle stops (``StopRequested``).
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
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    String,
    Table,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from crm_handoff.errors import StopRequested
from sync.state import _utc, metadata

log = structlog.get_logger("handoff.lease")

leases = Table(
    "leases",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("generation", BigInteger, nullable=False, server_default="0"),
)

Clock = Callable[[], datetime]

LOST = "stopped: the lease was lost to another replica"


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
    """The outcome of an acquire: who holds the lease now, until when, in which generation."""

    acquired: bool
    holder: str | None
    expires_at: datetime | None
    previous: str | None = None  # the holder whose expired lease was taken over
    generation: int = 0  # this tenure's fencing token (when acquired)

    def reason(self) -> str:
        """Why the lease was not acquired, for logs and ``handoff status``."""
        until = self.expires_at.isoformat(timespec="seconds") if self.expires_at else "?"
        return f"lease held by {self.holder} until {until}"


def _first_generation(now: datetime) -> int:
    """A new lease row's generation: its creation time in ms, above any generation an
    earlier (released, deleted) row of that name reached, as that grew by one a cycle."""
    return int(now.timestamp() * 1000)


class Leases:
    """Acquire, renew and release named leases in the state database."""

    def __init__(self, engine: Engine, clock: Clock = _now) -> None:
        self.engine = engine
        self.clock = clock

    def acquire(self, name: str, holder: str, ttl: float) -> LeaseState:
        """Take the lease if it is free, expired or already ours (a new generation each
        time); else report the holder."""
        now = self.clock()
        expires = now + timedelta(seconds=ttl)
        with self.engine.begin() as conn:
            row = conn.execute(select(leases).where(leases.c.name == name)).first()
            if row is None:
                first = _first_generation(now)
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(leases).values(
                                name=name,
                                holder=holder,
                                acquired_at=now,
                                expires_at=expires,
                                generation=first,
                            )
                        )
                    return LeaseState(True, holder, expires, generation=first)
                except IntegrityError:
                    row = None  # another replica inserted first: fall through to the update
            taken = conn.execute(
                update(leases)
                .where(leases.c.name == name, or_(leases.c.holder == holder, leases.c.expires_at < now))
                .values(
                    holder=holder, expires_at=expires, acquired_at=now, generation=leases.c.generation + 1
                )
            ).rowcount
            if taken == 1:  # the row is ours (locked) until commit: read the generation we set
                generation = conn.execute(
                    select(leases.c.generation).where(leases.c.name == name)
                ).scalar_one()
                previous = row.holder if row is not None and row.holder != holder else None
                return LeaseState(True, holder, expires, previous, int(generation))
            current = conn.execute(select(leases).where(leases.c.name == name)).first()
        if current is None:
            return LeaseState(False, None, None)
        return LeaseState(False, current.holder, _utc(current.expires_at))

    def renew(self, name: str, holder: str, ttl: float, generation: int) -> bool:
        """Extend this tenure of the lease; False when another acquisition happened since."""
        expires = self.clock() + timedelta(seconds=ttl)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == holder, leases.c.generation == generation)
                .values(expires_at=expires)
            ).rowcount
        return done == 1

    def release(self, name: str, holder: str, generation: int) -> None:
        """Give the lease up (only if this tenure still holds it)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(leases).where(
                    leases.c.name == name, leases.c.holder == holder, leases.c.generation == generation
                )
            )

    def holder(self, name: str) -> tuple[str, datetime] | None:
        """The current holder and expiry of a lease, if any row exists."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
            ).first()
        return (row.holder, _utc(row.expires_at) or self.clock()) if row else None


class Fence:
    """One tenure of a lease (holder + generation), confirmed in the database before writes.

    ``check`` is the fence: call it right before every write batch. ``lost`` is set for
    good once this tenure is found to have lost the lease (by ``check`` or the heartbeat).
    """

    def __init__(self, leases_: Leases, name: str, holder: str, generation: int, ttl: float) -> None:
        self.leases, self.name, self.holder, self.generation, self.ttl = (
            leases_,
            name,
            holder,
            generation,
            ttl,
        )
        self.lost = threading.Event()
        self._lock = threading.Lock()

    def renew(self) -> bool:
        """Extend the lease if this tenure still holds it; False (and ``lost``) once it does not.

        Database errors propagate: the caller decides whether to wait or stop.
        """
        if self.lost.is_set():
            return False
        if self.leases.renew(self.name, self.holder, self.ttl, self.generation):
            return True
        with self._lock:
            if not self.lost.is_set():
                self.lost.set()
                log.error("lease_lost", lease=self.name, holder=self.holder, generation=self.generation)
        return False

    def check(self, before: str) -> None:
        """Raise ``StopRequested`` unless this tenure still holds the lease; on success the
        lease runs a full TTL from now. ``before`` names the write, for the log and reason."""
        try:
            held = self.renew()
        except Exception as exc:  # cannot tell whether we still hold it: do not write
            log.error("write_fenced", before=before, lease=self.name, error=type(exc).__name__)
            raise StopRequested(
                f"stopped: the lease could not be confirmed before {before} ({type(exc).__name__}); not sent"
            ) from None
        if not held:
            log.error("write_fenced", before=before, lease=self.name, generation=self.generation)
            raise StopRequested(f"{LOST}; {before} not sent")

    def release(self) -> None:
        """Give the lease up if this tenure still holds it."""
        self.leases.release(self.name, self.holder, self.generation)


class Heartbeat:
    """Renews a fenced lease every ``ttl / 3`` seconds until closed; sets ``fence.lost`` if it fails."""

    def __init__(self, fence: Fence) -> None:
        self.fence = fence
        self.lost = fence.lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{fence.name}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.fence.ttl / 3):
            try:
                ok = self.fence.renew()
            except Exception as exc:  # a database hiccup: try again next beat
                log.warning("lease_renew_failed", lease=self.fence.name, error=type(exc).__name__)
                continue
            if not ok:
                return
