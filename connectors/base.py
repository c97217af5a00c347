"""The one seam between the sync engine and a CRM.

Each connector owns every call to its CRM through the official SDK. Nothing outside
``connectors/`` imports an SDK.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from sync.records import Activity, Crm, Owner, Person, PersonCreate, PersonUpdate, TaskRequest, WriteResult


class Connector(Protocol):
    """What the engine needs from a CRM."""

    name: Crm
    #: API calls made, by endpoint; what our users pay for.
    calls: Counter[str]
    #: CRM field names of crm-handoff's own fields, by canonical name: status, reason,
    #: score, rep, date, link (the other CRM's id), and "task_key" on tasks.
    handoff_fields: Mapping[str, str]

    def pull_owners(self) -> list[Owner]:
        """All owners/users, active and inactive."""
        ...

    def pull_people(self, since: datetime | None) -> Iterator[Person]:
        """People changed at or after ``since`` (None: everyone), each at least once."""
        ...

    def read_people(self, ids: Sequence[str], object_type: str) -> list[Person]:
        """Current records for the given ids (missing ids are skipped)."""
        ...

    def pull_activities(self, since: datetime) -> Iterator[Activity]:
        """Activities that occurred or changed at or after ``since``."""
        ...

    def find_tasks(self, keys: Sequence[str]) -> dict[str, str]:
        """Handoff key -> task id for tasks that already exist."""
        ...

    def write_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        """Create the tasks idempotently in batches; one result per task, by key."""
        ...

    def update_people(self, updates: Sequence[PersonUpdate]) -> list[WriteResult]:
        """Write field values on people in batches; one result per person id."""
        ...

    def create_people(self, people: Sequence[PersonCreate]) -> list[WriteResult]:
        """Create people idempotently, keyed by ``external_id``."""
        ...
