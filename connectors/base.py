"""The one seam between the sync engine and a CRM.

Each connector owns every call to its CRM through the official SDK. Nothing outside
``connectors/`` imports an SDK.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from crm_handoff.records import (
    Activity,
    Crm,
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

#: In ``OpenWork.task_types``: tasks of every type.
ANY_TYPE = "*"


@dataclass(frozen=True)
class OpenWork:
    """The open work of one owner that counts against their capacity (``Connector.open_work``).

    ``task_types``: open tasks of these types (``ANY_TYPE``: of every type); never
    crm-handoff's own tasks (they carry the handoff key: the ledger counts them).
    ``lead_statuses``: unconverted leads in these statuses (Salesforce), never those
    crm-handoff handed off. Empty: not counted. ``up_to``: counting may stop there (more
    would not change the owner's capacity); None: count everything.
    """

    task_types: tuple[str, ...] = ()
    lead_statuses: tuple[str, ...] = ()
    up_to: int | None = None


class Connector(Protocol):
    """What the engine needs from a CRM."""

    name: Crm
    #: API calls made, by endpoint; what our users pay for.
    calls: Counter[str]
    #: CRM field names of crm-handoff's own fields, by canonical name: status, reason,
    #: score, rep, date, link (the other CRM's id), and "task_key" on tasks.
    handoff_fields: Mapping[str, str]
    #: Values every write changes (modification stamps): ignored when a pulled record is
    #: compared with the mirror to tell a real change from the echo of our own write.
    stamp_fields: frozenset[str]
    #: Tasks one write call takes: the cycle writes tasks in whole pages of this size.
    task_page: int
    #: The field that holds a person's owner (a user id), written with a handoff.
    owner_field: str
    #: True when the account-wide activity pull is slow (rate-limited, many pages): the
    #: cycle runs it on a thread of its own while the other CRMs are pulled and evaluated.
    activity_in_background: bool

    @property
    def activity_late(self) -> timedelta | None:
        """How far back an hourly re-read of activity reaches, for a CRM whose activity is
        read by occurrence time and may arrive late (None: no late re-read)."""
        ...

    @property
    def rate_limit_waited(self) -> float:
        """Seconds spent waiting for the CRM's rate limits so far."""
        ...

    def pull_owners(self) -> list[Owner]:
        """All owners/users, active and inactive."""
        ...

    def pull_people(self, since: datetime | None, resume: Mapping[str, str] | None) -> Iterator[PeoplePage]:
        """People changed at or after ``since`` (None: everyone), page by page.

        ``resume`` is a page's token from an interrupted pass: the pull continues
        after that page. Every person changed in the window appears at least once.
        """
        ...

    def pull_activities(self, since: datetime) -> Iterator[Activity]:
        """Account-wide activities that occurred or changed at or after ``since``."""
        ...

    def activities_for(self, people: Sequence[Person], since: datetime) -> Iterator[Activity]:
        """Activities of these (just pulled) people that the account-wide pull cannot see."""
        ...

    def find_tasks(self, keys: Sequence[str]) -> dict[str, str]:
        """Handoff key -> task id for tasks that already exist."""
        ...

    def open_work(self, wanted: Mapping[str, OpenWork]) -> dict[str, int]:
        """Owner id -> how much open work ``wanted[owner id]`` describes they have.

        Read for all owners together, in aggregate or paged queries whose number does
        not grow with the owners (never a call per owner).
        """
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

    def read_tasks(self, task_ids: Sequence[str]) -> list[TaskState]:
        """The current state of these tasks (one per distinct id, in order), batched
        (never a call per task); a task the CRM no longer has is ``deleted``."""
        ...

    def touches(self, person_ids: Sequence[str], since: datetime) -> Iterator[Touch]:
        """Calls, emails and meetings logged on these people at or after ``since``, by
        anyone (``owner_id`` says whose), batched (never a call per person)."""
        ...

    def task_changes(self, since: datetime, owner_ids: Sequence[str]) -> TaskChanges:
        """Handoff tasks modified at/after ``since`` and, where the same call can tell, the
        calls, emails and meetings these owners logged since then. Batched: an idle CRM
        costs one call."""
        ...

    def read_people(self, ids: Sequence[str]) -> list[Person]:
        """These records as the CRM holds them now (batched; an id it no longer has comes
        back as a deleted person). For ``handoff explain --refresh``."""
        ...

    def close_tasks(self, items: Sequence[TaskClose]) -> list[WriteResult]:
        """Close tasks with a note appended, idempotently (a closed task: success, nothing
        written); one result per item, keyed by task id."""
        ...

    def install(self, outcomes: Sequence[tuple[str, str]] = ()) -> list[str]:
        """Create crm-handoff's fields in the CRM where missing (idempotent), with the outcome
        picklist on tasks holding ``outcomes`` ((value, label) each; none: no picklist);
        returns what was done or found, a line each (``handoff install``)."""
        ...
