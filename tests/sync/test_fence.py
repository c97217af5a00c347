"""Fenced connectors: every write batch is checked against the lease first; reads pass."""

from __future__ import annotations

import inspect
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Connector
from crm_handoff.errors import StopRequested
from crm_handoff.records import Owner, PersonCreate, PersonUpdate, TaskRequest, WriteResult
from sync.fence import READS, WRITES, FencedConnector, fenced
from sync.lease import Fence, Leases
from sync.migrations import upgrade
from sync.state import StateStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class FakeCrm:
    """A connector that records what it was asked to write, two records a batch."""

    name = "hubspot"
    handoff_fields = {"status": "crm_handoff_status"}
    stamp_fields = frozenset({"lastmodifieddate"})
    task_page = 2
    rate_limit_waited = 1.5  # not in the Protocol: still reachable through the proxy

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.sent: list[tuple[str, list[str]]] = []
        self.on_write: Any = None

    def _write(self, what: str, keys: list[str]) -> list[WriteResult]:
        self.calls[what] += 1
        self.sent.append((what, keys))
        if self.on_write:
            self.on_write()
        return [WriteResult(k, True, f"id-{k}") for k in keys]

    def pull_owners(self) -> list[Owner]:
        self.calls["owners"] += 1
        return [Owner("hubspot", "1", "sam@northwind.example", "Sam")]

    def pull_people(self, since: Any, resume: Any) -> Any:
        return iter([])

    def pull_activities(self, since: Any) -> Any:
        return iter([])

    def activities_for(self, people: Any, since: Any) -> Any:
        return iter([])

    def find_tasks(self, keys: Any) -> dict[str, str]:
        self.calls["find"] += 1
        return {k: f"id-{k}" for k in keys}

    def write_tasks(self, tasks: Any) -> list[WriteResult]:
        return self._write("tasks", [t.key for t in tasks])

    def update_people(self, updates: Any) -> list[WriteResult]:
        return self._write("update", [u.person_id for u in updates])

    def create_people(self, people: Any) -> list[WriteResult]:
        return self._write("create", [p.external_id for p in people])


def _task(i: int) -> TaskRequest:
    return TaskRequest(f"k{i}", f"p{i}", "contact", "1", "Call", "", date(2026, 3, 3), "high")


@pytest.fixture
def leases(state_url):
    store = StateStore(state_url)
    upgrade(store.engine)
    yield Leases(store.engine, Clock())
    store.close()


def _fenced(leases: Leases) -> tuple[FakeCrm, FencedConnector, Fence]:
    held = leases.acquire("cycle", "a", ttl=10)
    fence = Fence(leases, "cycle", "a", held.generation, ttl=10)
    crm = FakeCrm()
    return crm, FencedConnector(crm, fence.check), fence


def _take_over(leases: Leases) -> None:
    leases.clock.now += timedelta(seconds=11)  # type: ignore[attr-defined]
    assert leases.acquire("cycle", "b", ttl=10).acquired


def test_writes_go_out_batch_by_batch_while_the_lease_is_held(leases):
    crm, conn, _ = _fenced(leases)
    results = conn.write_tasks([_task(i) for i in range(5)])
    assert [r.key for r in results] == ["k0", "k1", "k2", "k3", "k4"]
    assert crm.sent == [("tasks", ["k0", "k1"]), ("tasks", ["k2", "k3"]), ("tasks", ["k4"])]
    conn.update_people([PersonUpdate("p1", "contact", {"x": 1})])
    conn.create_people([PersonCreate("h1", "lead", {"Email": "a@b.example"})])
    assert [what for what, _ in crm.sent[3:]] == ["update", "create"]
    assert conn.write_tasks([]) == [] and len(crm.sent) == 5


def test_no_write_once_another_replica_took_the_lease_but_reads_pass(leases):
    crm, conn, fence = _fenced(leases)
    _take_over(leases)
    for write in (
        lambda: conn.write_tasks([_task(1)]),
        lambda: conn.update_people([PersonUpdate("p1", "contact", {"x": 1})]),
        lambda: conn.create_people([PersonCreate("h1", "lead", {})]),
    ):
        with pytest.raises(StopRequested, match="lease was lost to another replica"):
            write()
    assert crm.sent == []  # nothing reached the CRM
    assert fence.lost.is_set()
    assert conn.pull_owners()[0].email == "sam@northwind.example"
    assert conn.find_tasks(["k1"]) == {"k1": "id-k1"}
    assert list(conn.pull_people(None, None)) == [] and list(conn.pull_activities(leases.clock())) == []
    assert conn.calls is crm.calls and conn.calls["owners"] == 1  # the connector's own counter
    assert (conn.name, conn.task_page, conn.rate_limit_waited) == ("hubspot", 2, 1.5)


def test_a_lease_lost_between_two_batches_stops_the_second(leases):
    crm, conn, _ = _fenced(leases)
    crm.on_write = lambda: _take_over(leases) if len(crm.sent) == 1 else None
    with pytest.raises(StopRequested):
        conn.write_tasks([_task(i) for i in range(5)])
    assert crm.sent == [("tasks", ["k0", "k1"])]


def test_every_connector_method_is_either_a_fenced_write_or_a_read():
    """A write method added to the Protocol without being fenced fails here."""
    methods = {n for n, _ in inspect.getmembers(Connector, inspect.isfunction) if not n.startswith("_")}
    assert methods == READS | WRITES
    assert not READS & WRITES
    for name in WRITES:
        assert name in FencedConnector.__dict__, f"{name} is not fenced"


def test_fenced_wraps_every_connector():
    checked: list[str] = []
    wrapped = fenced({"hubspot": FakeCrm(), "salesforce": FakeCrm()}, checked.append)
    assert all(isinstance(c, FencedConnector) for c in wrapped.values())
    wrapped["salesforce"].write_tasks([_task(1)])
    assert checked == ["a HubSpot task write of 1"]  # FakeCrm calls itself hubspot
