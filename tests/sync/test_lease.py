"""Leases on SQLite and PostgreSQL: one holder at a time, takeover after expiry, and a
generation per tenure that fences off a holder which lost the lease."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from crm_handoff.errors import StopRequested
from sync.lease import Fence, Heartbeat, Leases, default_holder, holder_pid
from sync.migrations import upgrade
from sync.state import StateStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(state_url):
    s = StateStore(state_url)
    upgrade(s.engine)
    yield s
    s.close()


def test_one_holder_until_expiry_then_takeover(store):
    clock = Clock()
    leases = Leases(store.engine, clock)
    first = leases.acquire("cycle", "a", ttl=30)
    assert first.acquired and first.previous is None
    other = leases.acquire("cycle", "b", ttl=30)
    assert not other.acquired and other.holder == "a"
    assert other.reason() == "lease held by a until 2026-03-02T09:00:30+00:00"
    assert leases.acquire("cycle", "a", ttl=30).acquired  # re-entrant for its holder

    clock.advance(31)
    taken = leases.acquire("cycle", "b", ttl=30)
    assert taken.acquired and taken.previous == "a"
    assert not leases.renew("cycle", "a", ttl=30, generation=first.generation)  # a lost it
    assert leases.holder("cycle") == ("b", clock.now + timedelta(seconds=30))


def test_renew_keeps_it_and_release_frees_it(store):
    clock = Clock()
    leases = Leases(store.engine, clock)
    a = leases.acquire("cycle", "a", ttl=10)
    assert a.acquired
    for _ in range(5):
        clock.advance(8)
        assert leases.renew("cycle", "a", ttl=10, generation=a.generation)
        assert not leases.acquire("cycle", "b", ttl=10).acquired
    leases.release("cycle", "b", a.generation)  # not b's: nothing happens
    leases.release("cycle", "a", a.generation - 1)  # not this tenure's: nothing happens
    assert leases.holder("cycle")[0] == "a"
    leases.release("cycle", "a", a.generation)
    assert leases.holder("cycle") is None
    assert leases.acquire("cycle", "b", ttl=10).acquired


def test_concurrent_acquire_has_exactly_one_winner(store):
    leases = Leases(store.engine)
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def race(i: int) -> None:
        barrier.wait()
        if leases.acquire("cycle", f"w{i}", ttl=30).acquired:
            wins.append(f"w{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(wins) == 1
    assert leases.holder("cycle")[0] == wins[0]


def test_heartbeat_renews_while_the_job_runs(store):
    leases = Leases(store.engine)
    a = leases.acquire("cycle", "a", ttl=0.6)
    assert a.acquired
    with Heartbeat(Fence(leases, "cycle", "a", a.generation, ttl=0.6)) as beat:
        threading.Event().wait(1.0)  # longer than the TTL: only renewals keep it
        assert not leases.acquire("cycle", "b", ttl=0.6).acquired
    assert not beat.lost.is_set()


def test_heartbeat_notices_a_lost_lease(store):
    clock = Clock()
    leases = Leases(store.engine, clock)
    a = leases.acquire("cycle", "a", ttl=0.3)
    assert a.acquired
    clock.advance(1)
    assert leases.acquire("cycle", "b", ttl=30).acquired
    with Heartbeat(Fence(leases, "cycle", "a", a.generation, ttl=0.3)) as beat:
        assert beat.lost.wait(2)


def test_every_acquisition_is_a_new_generation_and_generations_never_go_back(store):
    clock = Clock()
    leases = Leases(store.engine, clock)
    seen = [leases.acquire("cycle", "a", ttl=10).generation]
    seen.append(leases.acquire("cycle", "a", ttl=10).generation)  # the same holder again
    clock.advance(11)
    seen.append(leases.acquire("cycle", "b", ttl=10).generation)  # a takeover
    leases.release("cycle", "b", seen[-1])
    assert leases.holder("cycle") is None
    clock.advance(1)
    seen.append(leases.acquire("cycle", "a", ttl=10).generation)  # a fresh row after the release
    assert seen == sorted(set(seen)), seen


def test_fence_passes_while_held_and_stops_writes_once_taken_over(store):
    clock = Clock()
    leases = Leases(store.engine, clock)
    a = leases.acquire("cycle", "a", ttl=10)
    fence = Fence(leases, "cycle", "a", a.generation, ttl=10)
    clock.advance(9)
    fence.check("a task write")  # held: passes, and gives the lease a full TTL again
    clock.advance(9)
    assert not leases.acquire("cycle", "b", ttl=10).acquired
    clock.advance(30)  # a paused past its TTL: nobody took over, so it still holds it
    fence.check("a task write")
    clock.advance(11)
    assert leases.acquire("cycle", "b", ttl=10).acquired
    with pytest.raises(StopRequested, match="lease was lost to another replica; a task write not sent"):
        fence.check("a task write")
    assert fence.lost.is_set()
    assert leases.holder("cycle")[0] == "b"  # a's failed check changed nothing
    fence.release()
    assert leases.holder("cycle")[0] == "b"


def test_fence_stops_a_holder_whose_own_name_acquired_again(store):
    """Two processes with the same HANDOFF_WORKER_ID: the older tenure is fenced off."""
    leases = Leases(store.engine)
    old = Fence(leases, "cycle", "w1", leases.acquire("cycle", "w1", ttl=10).generation, ttl=10)
    new = Fence(leases, "cycle", "w1", leases.acquire("cycle", "w1", ttl=10).generation, ttl=10)
    new.check("a write")
    with pytest.raises(StopRequested):
        old.check("a write")


def test_fence_does_not_write_when_the_database_cannot_confirm(store, monkeypatch):
    leases = Leases(store.engine)
    fence = Fence(leases, "cycle", "a", leases.acquire("cycle", "a", ttl=10).generation, ttl=10)

    def unreachable(*_: object, **__: object) -> bool:
        raise OperationalError("UPDATE leases", {}, Exception("server closed the connection"))

    monkeypatch.setattr(leases, "renew", unreachable)
    with pytest.raises(StopRequested, match=r"could not be confirmed before a write \(OperationalError\)"):
        fence.check("a write")
    assert not fence.lost.is_set()  # not known to be lost: the next run may well hold it


def test_default_holder_names_the_process():
    import os

    holder = default_holder()
    assert holder_pid(holder) == os.getpid()
    assert holder_pid("custom-name") is None
