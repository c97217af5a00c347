"""Canonical records that cross the connector seam.

Connectors turn CRM payloads into these plain, frozen dataclasses; everything in the
pure core (mapping, scoring, routing, reporting) works on them alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

Crm = Literal["hubspot", "salesforce"]
CRMS: tuple[Crm, Crm] = ("hubspot", "salesforce")

#: The values of a person's handoff status (HubSpot ``crm_handoff_status`` is a dropdown of
#: these, so marketers can filter and chart it); the detail is in the handoff reason.
HANDOFF_STATUSES = (
    "handed off",
    "waiting: rep capacity",
    "waiting: no eligible rep",
    "set aside",
    "no longer sales-ready",
    "back in nurture",
)

#: The values of the HubSpot contact property ``crm_handoff_outcome``: what became of the
#: person's latest handoff (``sync.judge``); ``crm_handoff_sla`` is one of HANDOFF_SLA.
HANDOFF_OUTCOMES = ("open", "acted", "worked", "rejected", "rerouted", "reassigned", "recycled", "deleted")
HANDOFF_SLA = ("open", "met", "missed", "none")

#: Activity kinds the sales-ready rules can count.
ACTIVITY_KINDS = (
    "form_fill",
    "content_download",
    "webinar_attended",
    "email_click",
    "page_view",
    "meeting",
    "call",
    "note",
)


def normalize_email(raw: str | None) -> str | None:
    """The identity form of an email address: trimmed and case-folded whole, None when blank.

    Every place that decides identity (merge by email, activity matching, owner lookup)
    compares this form, and crm-handoff writes it when it creates a person.
    """
    if raw is None:
        return None
    clean = str(raw).strip().casefold()
    return clean or None


@dataclass(frozen=True, slots=True)
class Person:
    """A HubSpot contact or a Salesforce lead/contact as the CRM holds it."""

    crm: Crm
    id: str
    object_type: str  # "contact" (HubSpot); "lead" or "contact" (Salesforce)
    email: str | None
    values: Mapping[str, str | None]  # raw CRM property/field values by CRM name
    modified_at: datetime
    owner_id: str | None = None
    linked_id: str | None = None  # the other CRM's id, as stored on this record
    deleted: bool = False
    converted_to: str | None = None  # Salesforce: contact id a lead was converted to
    opportunity_stage: str | None = None  # Salesforce: stage of the person's opportunity
    field_modified_at: Mapping[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", normalize_email(self.email))

    @property
    def ref(self) -> str:
        """A short, unique reference for messages: ``hubspot:contact/123``."""
        return f"{self.crm}:{self.object_type}/{self.id}"


@dataclass(frozen=True, slots=True)
class PeoplePage:
    """One page of a pull, with the token that resumes the pull after it.

    ``resume`` is None on the last page of a pass: the pass is complete.
    """

    people: list[Person]
    resume: dict[str, str] | None
    watermark: datetime | None = None  # on the last page: where the next pass starts
    alive: Mapping[str, frozenset[str]] | None = None  # a full reconcile: every live id, by object type


@dataclass(frozen=True, slots=True)
class Activity:
    """One thing a person did (or a rep did with them)."""

    crm: Crm
    id: str
    kind: str  # one of ACTIVITY_KINDS
    occurred_at: datetime
    person_id: str | None = None  # CRM id of the person, when the CRM gives it
    email: str | None = None  # otherwise the person's email
    title: str = ""  # asset, form, page, campaign or subject

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", normalize_email(self.email))


@dataclass(frozen=True)
class Reason:
    """One sales-ready rule that fired, with its points and what made it fire."""

    rule: str
    points: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Owner:
    """A HubSpot owner or Salesforce user who can be assigned work."""

    crm: Crm
    id: str
    email: str
    name: str
    active: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", normalize_email(self.email) or "")


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A follow-up task to create for a rep, keyed for idempotency."""

    key: str
    person_id: str
    person_type: str
    owner_id: str
    subject: str
    body: str
    due: date
    priority: str  # "high" | "normal" | "low"


@dataclass(frozen=True, slots=True)
class PersonUpdate:
    """Field values to write on one person record."""

    person_id: str
    object_type: str
    values: Mapping[str, str | int | float | None]


@dataclass(frozen=True, slots=True)
class PersonCreate:
    """A person to create in a CRM, keyed by the other CRM's id (idempotent)."""

    external_id: str  # the id in the CRM the person comes from
    object_type: str
    values: Mapping[str, str | int | float | None]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of one record in a batched write."""

    key: str  # handoff key, person id or external id the caller sent
    ok: bool
    crm_id: str | None = None
    error: str | None = None
    code: str | None = None
    created: bool | None = None


@dataclass(frozen=True, slots=True)
class TaskState:
    """A handoff task as the CRM holds it now (``Connector.read_tasks``).

    ``status`` is the CRM's raw value; ``closed`` what it means (HubSpot COMPLETED,
    Salesforce ``IsClosed``). ``outcome`` is the rep's choice in the outcome picklist.
    ``deleted``: the CRM no longer has the task (``key`` then None when it is not known).
    """

    key: str | None
    task_id: str
    status: str | None
    closed: bool
    completed_at: datetime | None
    outcome: str | None
    owner_id: str | None
    modified_at: datetime | None
    deleted: bool = False


TouchKind = Literal["call", "email", "meeting", "task", "lead status"]


@dataclass(frozen=True, slots=True)
class Touch:
    """A call, email or meeting logged on a person (``Connector.touches``).

    ``occurred_at``: the earlier of the activity's own time and when it was logged (a
    call logged late counts when it was made, a meeting booked ahead when it was booked).
    """

    crm: Crm
    id: str
    person_id: str
    kind: TouchKind
    owner_id: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class TaskClose:
    """Close a rep's task (``Connector.close_tasks``), e.g. as reassigned.

    ``status``: the CRM status to set (None: its completed status); ``note`` is appended
    to the task's body/description; ``outcome``: a value for the outcome picklist, if any.
    """

    task_id: str
    note: str
    status: str | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class TaskChanges:
    """What changed on handoff tasks since a time (``Connector.task_changes``): the tasks
    (deleted ones included, where the CRM says) and, where the same call can tell, touches
    logged by the given owners (else none: ``touches`` is asked per person)."""

    tasks: list[TaskState]
    touches: list[Touch]
