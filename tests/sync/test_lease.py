"""Leases on SQLite and PostgreSQL: one holder at a time, takeover after expiry."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from sync.lease import Heartbeat, Leases, default_holder, holder_pid
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
    assert not leases.renew("cycle", "a", ttl=30)  # a lost it
    assert leases.holder("cycle") == ("b", clock.now + timedelta(seconds=30))


def test_renew_keeps_it_and_release_frees_it(store):
    clock = Clock()
    leases = Leases(store.engine, clock)
    assert leases.acquire("cycle", "a", ttl=10).acquired
    for _ in range(5):
        clock.advance(8)
        assert leases.renew("cycle", "a", ttl=10)
        assert not leases.acquire("cycle", "b", ttl=10).acquired
    leases.release("cycle", "b")  # not b's: nothing happens
    assert leases.holder("cycle")[0] == "a"
    leases.release("cycle", "a")
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
    assert leases.acquire("cycle", "a", ttl=0.6).acquired
    with Heartbeat(leases, "cycle", "a", ttl=0.6) as beat:
        threading.Event().wait(1.0)  # longer than the TTL: only renewals keep it
        assert not leases.acquire("cycle", "b", ttl=0.6).acquired
    assert not beat.lost.is_set()


def test_heartbeat_notices_a_lost_lease(store):
    clock = Clock()
    leases = Leases(store.engine, clock)
    assert leases.acquire("cycle", "a", ttl=0.3).acquired
    clock.advance(1)
    assert leases.acquire("cycle", "b", ttl=30).acquired
    with Heartbeat(leases, "cycle", "a", ttl=0.3) as beat:
        assert beat.lost.wait(2)


def test_default_holder_names_the_process():
    import os

    holder = default_holder()
    assert holder_pid(holder) == os.getpid()
    assert holder_pid("custom-name") is None
