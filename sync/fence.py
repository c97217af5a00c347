"""Fenced connectors: a replica writes to a CRM only while it still holds its lease.

:class:`FencedConnector` wraps a connector. Reads pass straight through. Every write
method (``WRITES``) sends its records in slices of the connector's write batch
(``task_page``: the records one write call takes, HubSpot 100, Salesforce 200, the same
for tasks and people) and calls ``check`` right before each slice, so every HTTP write
batch is preceded by its own check in the database (``sync.lease.Fence.check``). A
failed check raises ``StopRequested``: that batch and every later one are not sent.

What no client-side fence can close: a process stuck *during* a batch, after its check
passed, sends that one batch late. The check renews the lease for a full TTL (and the
heartbeat goes on renewing it), so the batch is safe unless the process is stuck for
longer than the TTL between the check and the CRM receiving the call (paused, or cut off
from the database); past that only the CRM could refuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from more_itertools import chunked

from connectors.base import Connector, OpenWork
from crm_handoff.records import (
    Activity,
    Owner,
    PeoplePage,
    Person,
    PersonCreate,
    PersonUpdate,
    TaskChanges,
    TaskClose,
    TaskRequest,
    TaskState,
    Touch,
    WriteResult,
)

#: ``Connector`` methods that write to the CRM: each batch they send is fenced.
WRITES = frozenset({"write_tasks", "update_people", "create_people", "close_tasks", "install"})
#: ``Connector`` methods that only read: passed through.
READS = frozenset(
    {
        "pull_owners",
        "pull_people",
        "pull_activities",
        "activities_for",
        "find_tasks",
        "open_work",
        "read_tasks",
        "touches",
        "task_changes",
        "read_people",
    }
)

Check = Callable[[str], None]
T = TypeVar("T")

_LABELS = {"hubspot": "a HubSpot", "salesforce": "a Salesforce"}


class FencedConnector:
    """A connector whose every write batch is preceded by ``check`` (which raises to stop it)."""

    def __init__(self, inner: Connector, check: Check) -> None:
        self.inner, self.check = inner, check
        self.name = inner.name
        self.calls = inner.calls  # the same counter: the connector keeps counting
        self.handoff_fields = inner.handoff_fields
        self.stamp_fields = inner.stamp_fields
        self.task_page = inner.task_page

    def __getattr__(self, attr: str) -> Any:
        """Anything else the connector has (``rate_limit_waited``...) is the connector's."""
        if attr == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    # --- reads ----------------------------------------------------------------------
    def pull_owners(self) -> list[Owner]:
        return self.inner.pull_owners()

    def pull_people(self, since: datetime | None, resume: Mapping[str, str] | None) -> Iterator[PeoplePage]:
        return self.inner.pull_people(since, resume)

    def pull_activities(self, since: datetime) -> Iterator[Activity]:
        return self.inner.pull_activities(since)

    def activities_for(self, people: Sequence[Person], since: datetime) -> Iterator[Activity]:
        return self.inner.activities_for(people, since)

    def find_tasks(self, keys: Sequence[str]) -> dict[str, str]:
        return self.inner.find_tasks(keys)

    def open_work(self, wanted: Mapping[str, OpenWork]) -> dict[str, int]:
        return self.inner.open_work(wanted)

    def read_tasks(self, task_ids: Sequence[str]) -> list[TaskState]:
        return self.inner.read_tasks(task_ids)

    def touches(self, person_ids: Sequence[str], since: datetime) -> Iterator[Touch]:
        return self.inner.touches(person_ids, since)

    def task_changes(self, since: datetime, owner_ids: Sequence[str]) -> TaskChanges:
        return self.inner.task_changes(since, owner_ids)

    def read_people(self, ids: Sequence[str]) -> list[Person]:
        return self.inner.read_people(ids)

    # --- writes ---------------------------------------------------------------------
    def write_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        return self._fenced("task write", self.inner.write_tasks, tasks)

    def update_people(self, updates: Sequence[PersonUpdate]) -> list[WriteResult]:
        return self._fenced("people update", self.inner.update_people, updates)

    def create_people(self, people: Sequence[PersonCreate]) -> list[WriteResult]:
        return self._fenced("people create", self.inner.create_people, people)

    def close_tasks(self, items: Sequence[TaskClose]) -> list[WriteResult]:
        return self._fenced("task close", self.inner.close_tasks, items)

    def install(self, outcomes: Sequence[tuple[str, str]] = ()) -> list[str]:
        self.check(f"{_LABELS.get(self.name, self.name)} install")
        return self.inner.install(outcomes)

    def _fenced(
        self, what: str, write: Callable[[Sequence[T]], list[WriteResult]], items: Sequence[T]
    ) -> list[WriteResult]:
        out: list[WriteResult] = []
        for part in chunked(items, max(1, self.task_page)):
            self.check(f"{_LABELS.get(self.name, self.name)} {what} of {len(part)}")
            out += write(part)
        return out


def fenced(connectors: Mapping[str, Connector], check: Check) -> dict[str, Connector]:
    """Every connector wrapped so that each of its write batches is checked first."""
    return {crm: FencedConnector(conn, check) for crm, conn in connectors.items()}
