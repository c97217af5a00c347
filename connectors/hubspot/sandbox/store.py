"""In-memory HubSpot portal behind the sandbox: CRM objects, owners, properties, events.

Pure Python, no HTTP. The WSGI app in ``app.py`` turns requests into calls on
:class:`HubSpotStore`; tests and the demo seed and inspect it directly. One re-entrant
lock guards everything. Records keep timestamps as epoch milliseconds and property
values as strings (HubSpot's wire format); ``hs_object_id``, the create date and the
last-modified date are derived on read so a million contacts stay affordable.
"""

from __future__ import annotations

import base64
import bisect
import fnmatch
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
LEAD_STATUSES = (
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
)
TASK_STATUSES = ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED")
TASK_PRIORITIES = ("LOW", "MEDIUM", "HIGH")
TASK_TYPES = ("EMAIL", "CALL", "TODO")
ENGAGEMENT_TYPES = ("meetings", "calls", "notes", "emails")
#: Activities that move a contact's "Last Activity Date" (``notes_last_updated``).
ACTIVITY_TYPES = ENGAGEMENT_TYPES
OBJECT_TYPES = ("contacts", "companies", "deals", "tasks", *ENGAGEMENT_TYPES)
SINGULAR = {"contacts": "contact", "tasks": "task", "meetings": "meeting", "calls": "call"}
SINGULAR |= {"notes": "note", "emails": "email", "companies": "company", "deals": "deal"}
_ALIASES = {"0-1": "contacts", "0-27": "tasks", "0-47": "meetings", "0-48": "calls"}
_ALIASES |= {"0-46": "notes", "0-49": "emails", "0-2": "companies", "0-3": "deals"}
_ALIASES |= {singular: plural for plural, singular in SINGULAR.items()}

#: HubSpot-defined association type ids, by (from, to) object type.
ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("tasks", "contacts"): 204,
    ("contacts", "tasks"): 203,
    ("notes", "contacts"): 202,
    ("contacts", "notes"): 201,
    ("meetings", "contacts"): 200,
    ("contacts", "meetings"): 199,
    ("emails", "contacts"): 198,
    ("contacts", "emails"): 197,
    ("calls", "contacts"): 194,
    ("contacts", "calls"): 193,
    ("contacts", "companies"): 279,
    ("companies", "contacts"): 280,
    ("deals", "contacts"): 3,
    ("contacts", "deals"): 4,
    ("deals", "companies"): 341,
    ("companies", "deals"): 342,
}
#: HUBSPOT_DEFINED "Primary" association type ids: (from, to) -> id. The primary company
#: of a contact (or deal) is also a plain association (279 / 341).
PRIMARY_TYPES: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 1,
    ("companies", "contacts"): 2,
    ("deals", "companies"): 5,
    ("companies", "deals"): 6,
}
#: Association reads return at most this many associated records per object a page.
ASSOCIATION_PAGE = 500

SEARCH_MAX_GROUPS, SEARCH_MAX_FILTERS, SEARCH_MAX_TOTAL_FILTERS = 5, 6, 18
SEARCH_MAX_RESULTS = 10_000
_RANGE_OPS = frozenset(("EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"))
OPERATORS = _RANGE_OPS | {"NEQ", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY"}
OPERATORS |= {"CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}
_CONTACT_DEFAULTS = (
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
)
_SEARCHABLE: tuple[str, ...] = (
    "email",
    "firstname",
    "lastname",
    "phone",
    "company",
    "hs_task_subject",
    "name",
    "domain",
)
_SEARCHABLE += ("dealname",)
_COMPANY_DEFAULTS = ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name")
_DEAL_DEFAULTS: tuple[str, ...] = ("amount", "closedate", "createdate", "dealname", "dealstage")
_DEAL_DEFAULTS += ("hs_lastmodifieddate", "hs_object_id", "pipeline")
#: The default sales pipeline's stages (internal value, label, won?, closed?).
DEAL_STAGES = (
    ("appointmentscheduled", "Appointment Scheduled", False, False),
    ("qualifiedtobuy", "Qualified To Buy", False, False),
    ("presentationscheduled", "Presentation Scheduled", False, False),
    ("decisionmakerboughtin", "Decision Maker Bought-In", False, False),
    ("contractsent", "Contract Sent", False, False),
    ("closedwon", "Closed Won", True, True),
    ("closedlost", "Closed Lost", False, True),
)


# --------------------------------------------------------------------------- errors


class HubSpotError(Exception):
    """An error HubSpot would report: HTTP status plus its standard error body fields."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        sub_category: str | None = None,
        errors: list[JSON] | None = None,
        context: JSON | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.sub_category = sub_category
        self.errors = errors or []
        self.context = context or {}

    def body(self, correlation_id: str | None = None) -> JSON:
        """The standard error body (``status: error``)."""
        out: JSON = {"status": "error", "message": self.message}
        if correlation_id is not None:
            out["correlationId"] = correlation_id
        out["category"] = self.category
        if self.sub_category:
            out["subCategory"] = self.sub_category
        out["errors"] = self.errors
        out["context"] = self.context
        out["links"] = {}
        return out


def validation_error(message: str, **kw: Any) -> HubSpotError:
    """A 400 VALIDATION_ERROR."""
    return HubSpotError(400, "VALIDATION_ERROR", message, **kw)


def property_error(name: str, code: str, message: str) -> HubSpotError:
    detail = {"isValid": False, "message": message, "error": code, "name": name}
    return validation_error(
        f"Property values were not valid: {json.dumps([detail])}",
        errors=[{"message": message, "code": code, "in": name, "context": {"propertyName": [name]}}],
    )


# --------------------------------------------------------------------------- time


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of ``value`` (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def iso(ms: int) -> str:
    """HubSpot's timestamp format: ``2026-11-20T10:15:30.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


_DIGITS = re.compile(r"-?\d+")


def parse_time(value: str) -> int | None:
    """Epoch ms from an epoch-ms string, an ISO date-time or an ISO date; None if invalid."""
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+", 1))
    except ValueError:
        return None
    return to_ms(parsed)


def object_type_name(name: str) -> str:
    """Canonical plural object type for a path segment (``0-1``, ``contact``, ``contacts``)."""
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in OBJECT_TYPES:
        raise HubSpotError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {name}")
    return name


# --------------------------------------------------------------------------- properties


def property_def(
    name: str,
    label: str,
    group: str,
    type_: str = "string",
    field_type: str = "text",
    options: Sequence[tuple[str, str]] = (),
    *,
    read_only: bool = False,
    unique: bool = False,
    hubspot_defined: bool = True,
) -> JSON:
    """A property definition as the Properties API returns it."""
    stamp = "2020-01-01T00:00:00.000Z"
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "description": "",
        "groupName": group,
        "options": [
            {"label": lab, "value": val, "displayOrder": i, "hidden": False}
            for i, (val, lab) in enumerate(options)
        ],
        "displayOrder": -1,
        "calculated": read_only and hubspot_defined,
        "externalOptions": name == "hubspot_owner_id",
        "hasUniqueValue": unique,
        "hidden": False,
        "hubspotDefined": hubspot_defined,
        "formField": not read_only,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": read_only,
        },
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": False,
    }


def _enum(values: Sequence[str], labels: Sequence[str] | None = None) -> list[tuple[str, str]]:
    labels = labels or [v.replace("_", " ").capitalize() for v in values]
    return list(zip(values, labels, strict=True))


_STAGE_LABELS = (
    "Subscriber",
    "Lead",
    "Marketing Qualified Lead",
    "Sales Qualified Lead",
    "Opportunity",
    "Customer",
    "Evangelist",
    "Other",
)


def _common_defs(group: str, created: str, updated: str) -> list[JSON]:
    return [
        property_def("hs_object_id", "Record ID", group, "number", "number", read_only=True),
        property_def(created, "Create Date", group, "datetime", "date", read_only=True),
        property_def(updated, "Last Modified Date", group, "datetime", "date", read_only=True),
        property_def("hubspot_owner_id", "Owner", group, "enumeration", "select"),
    ]


def _contact_defs() -> list[JSON]:
    g = "contactinformation"
    defs = _common_defs(g, "createdate", "lastmodifieddate")
    texts = ("email", "firstname", "lastname", "jobtitle", "company", "industry")
    labels = ("Email", "First Name", "Last Name", "Job Title", "Company Name", "Industry")
    defs += [property_def(n, lab, g) for n, lab in zip(texts, labels, strict=True)]
    defs += [
        property_def("numemployees", "Number of Employees", g),
        property_def("country", "Country/Region", g),
        property_def("phone", "Phone Number", g),
        property_def(
            "lifecyclestage",
            "Lifecycle Stage",
            g,
            "enumeration",
            "radio",
            _enum(LIFECYCLE_STAGES, _STAGE_LABELS),
        ),
        property_def("hs_lead_status", "Lead Status", g, "enumeration", "radio", _enum(LEAD_STATUSES)),
        property_def("hs_merged_object_ids", "Merged Record IDs", g, read_only=True),
        property_def("notes_last_updated", "Last Activity Date", g, "datetime", "date", read_only=True),
        property_def("associatedcompanyid", "Primary Associated Company ID", g, "number", "number"),
    ]
    for stage, label in zip(LIFECYCLE_STAGES, _STAGE_LABELS, strict=True):
        name = f"hs_lifecyclestage_{stage}_date"
        defs.append(property_def(name, f"Became a {label} Date", g, "datetime", "date", read_only=True))
    return defs


def _company_defs() -> list[JSON]:
    g = "companyinformation"
    defs = _common_defs(g, "createdate", "hs_lastmodifieddate")
    texts = ("name", "domain", "website", "industry", "country", "city", "phone")
    labels = (
        "Company name",
        "Company Domain Name",
        "Website URL",
        "Industry",
        "Country/Region",
        "City",
        "Phone Number",
    )
    defs += [property_def(n, lab, g) for n, lab in zip(texts, labels, strict=True)]
    defs += [
        property_def("numberofemployees", "Number of Employees", g, "number", "number"),
        property_def("annualrevenue", "Annual Revenue", g, "number", "number"),
        property_def(
            "lifecyclestage",
            "Lifecycle Stage",
            g,
            "enumeration",
            "radio",
            _enum(LIFECYCLE_STAGES, _STAGE_LABELS),
        ),
        property_def(
            "num_associated_contacts", "Number of Associated Contacts", g, "number", "number", read_only=True
        ),
    ]
    return defs


def _deal_defs() -> list[JSON]:
    g = "dealinformation"
    defs = _common_defs(g, "createdate", "hs_lastmodifieddate")
    stages = [(v, lab) for v, lab, _, _ in DEAL_STAGES]
    defs += [
        property_def("dealname", "Deal Name", g),
        property_def("amount", "Amount", g, "number", "number"),
        property_def("closedate", "Close Date", g, "datetime", "date"),
        property_def("dealstage", "Deal Stage", g, "enumeration", "radio", stages),
        property_def("pipeline", "Pipeline", g, "enumeration", "select", [("default", "Sales Pipeline")]),
        property_def(
            "dealtype", "Deal Type", g, "enumeration", "select", _enum(("newbusiness", "existingbusiness"))
        ),
        property_def("hs_is_closed", "Is Deal Closed?", g, "bool", "booleancheckbox", read_only=True),
        property_def("hs_is_closed_won", "Is Closed Won", g, "bool", "booleancheckbox", read_only=True),
    ]
    return defs


def _table_defs(name: str) -> list[JSON]:
    if name == "contacts":
        return _contact_defs()
    if name == "companies":
        return _company_defs()
    if name == "deals":
        return _deal_defs()
    return _engagement_defs(name)


def _engagement_defs(object_type: str) -> list[JSON]:
    g = f"{SINGULAR[object_type]}information"
    defs = _common_defs(g, "hs_createdate", "hs_lastmodifieddate")
    defs.append(property_def("hs_timestamp", "Activity date", g, "datetime", "date"))
    extra: dict[str, list[JSON]] = {
        "tasks": [
            property_def("hs_task_subject", "Task Title", g),
            property_def("hs_task_body", "Task Notes", g, field_type="textarea"),
            property_def("hs_task_status", "Task Status", g, "enumeration", "select", _enum(TASK_STATUSES)),
            property_def("hs_task_priority", "Priority", g, "enumeration", "select", _enum(TASK_PRIORITIES)),
            property_def(
                "hs_task_type",
                "Task Type",
                g,
                "enumeration",
                "select",
                _enum(TASK_TYPES, ("Email", "Call", "To-do")),
            ),
            property_def("hs_task_reminders", "Reminder", g),
            property_def("hs_task_completion_date", "Completed at", g, "datetime", "date", read_only=True),
        ],
        "meetings": [
            property_def(f"hs_meeting_{n}", n.replace("_", " ").title(), g)
            for n in ("title", "body", "outcome", "location")
        ]
        + [
            property_def(f"hs_meeting_{n}", n.replace("_", " ").title(), g, "datetime", "date")
            for n in ("start_time", "end_time")
        ],
        "calls": [
            property_def(f"hs_call_{n}", n.replace("_", " ").title(), g)
            for n in ("title", "body", "direction", "disposition", "duration", "status")
        ],
        "notes": [property_def("hs_note_body", "Note body", g, field_type="textarea")],
        "emails": [
            property_def(f"hs_email_{n}", n.replace("_", " ").title(), g)
            for n in ("subject", "text", "direction", "status")
        ],
    }
    return defs + extra[object_type]


# --------------------------------------------------------------------------- indexes


class SortedKeys:
    """A sorted set of ints with cheap inserts and removals (sorted base + pending sets)."""

    __slots__ = ("_added", "_base", "_removed")

    def __init__(self, keys: Iterable[int] = ()) -> None:
        self._base: list[int] = sorted(keys)
        self._added: set[int] = set()
        self._removed: set[int] = set()

    def add(self, key: int) -> None:
        if key in self._removed:
            self._removed.discard(key)
        elif self._base and key > self._base[-1] and not self._added:
            self._base.append(key)
        else:
            self._added.add(key)
            self._maybe_merge()

    def remove(self, key: int) -> None:
        if key in self._added:
            self._added.discard(key)
        else:
            self._removed.add(key)
            self._maybe_merge()

    def _maybe_merge(self) -> None:
        if len(self._added) + len(self._removed) > max(4096, len(self._base) >> 3):
            self._merge()

    def _merge(self) -> None:
        removed = self._removed
        base = [k for k in self._base if k not in removed] if removed else self._base
        base.extend(self._added)
        base.sort()
        self._base, self._added, self._removed = base, set(), set()

    def estimate(self, lo: int, hi: int) -> int:
        """Upper bound of the number of keys in ``[lo, hi)``."""
        b = self._base
        return bisect.bisect_left(b, hi) - bisect.bisect_left(b, lo) + len(self._added)

    def range(self, lo: int, hi: int) -> Iterator[int]:
        """Keys in ``[lo, hi)``, unordered."""
        b, removed = self._base, self._removed
        for k in b[bisect.bisect_left(b, lo) : bisect.bisect_left(b, hi)]:
            if k not in removed:
                yield k
        yield from (k for k in self._added if lo <= k < hi)


_ID_BITS = 32
_ID_MASK = (1 << _ID_BITS) - 1


class Record:
    """One CRM object. ``history`` is created on first change (values set at create are implied)."""

    __slots__ = ("archived", "created", "history", "id", "props", "updated")

    def __init__(self, id_: int, props: dict[str, str], created: int) -> None:
        self.id = id_
        self.props = props
        self.created = created
        self.updated = created
        self.archived = False
        self.history: dict[str, list[tuple[str, int, str]]] | None = None


class ObjectTable:
    """Records of one object type with id order, a last-modified index and unique indexes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.created_prop = "createdate" if name in ("contacts", "companies", "deals") else "hs_createdate"
        self.updated_prop = "lastmodifieddate" if name == "contacts" else "hs_lastmodifieddate"
        defaults = {"contacts": _CONTACT_DEFAULTS, "companies": _COMPANY_DEFAULTS, "deals": _DEAL_DEFAULTS}
        self.defaults: tuple[str, ...] = defaults.get(
            name, (self.created_prop, self.updated_prop, "hs_object_id")
        )
        self.always = (self.created_prop, self.updated_prop, "hs_object_id")
        self.records: dict[int, Record] = {}
        self.ids: list[int] = []
        self.archived_ids: list[int] = []
        self.modified = SortedKeys()
        self.unique: dict[str, dict[str, int]] = {}
        self.merged_into: dict[int, int] = {}
        defs = _table_defs(name)
        self.properties: dict[str, JSON] = {d["name"]: d for d in defs}
        group = defs[0]["groupName"]
        self.groups: dict[str, JSON] = {
            group: {
                "name": group,
                "label": f"{SINGULAR[name].title()} information",
                "displayOrder": 0,
                "archived": False,
            }
        }
        if name == "contacts":
            self.unique["email"] = {}

    # ----------------------------------------------------------------- reads

    def get(self, id_: int, *, archived: bool = False) -> Record | None:
        """The record with this id (following merges); None if missing or archived."""
        rec = self.records.get(self.merged_into.get(id_, id_))
        if rec is None or rec.archived != archived:
            return None
        return rec

    def value(self, rec: Record, name: str) -> str | None:
        """Current string value of a property, derived ones included."""
        if name == "hs_object_id":
            return str(rec.id)
        if name == self.created_prop:
            return iso(rec.created)
        if name == self.updated_prop:
            return iso(rec.updated)
        return rec.props.get(name)

    def all_values(self, rec: Record) -> dict[str, str]:
        """Every set property, derived ones included."""
        out = dict(rec.props)
        for name in ("hs_object_id", self.created_prop, self.updated_prop):
            out[name] = self.value(rec, name)  # type: ignore[assignment]
        return out

    def history(self, rec: Record, name: str) -> list[JSON]:
        """Value history of a property, newest first."""
        entries = (rec.history or {}).get(name)
        if entries is None:
            current = self.value(rec, name)
            ts = rec.updated if name == self.updated_prop else rec.created
            entries = [] if current is None else [(current, ts, "API")]
        return [{"value": v, "timestamp": iso(t), "sourceType": s} for v, t, s in reversed(entries)]

    def render(
        self,
        rec: Record,
        properties: Sequence[str] | None = None,
        with_history: Sequence[str] = (),
    ) -> JSON:
        """The record as HubSpot's ``SimplePublicObject``."""
        names = (*properties, *self.always) if properties else self.defaults
        props = {n: self.value(rec, n) for n in names if n in self.properties or n in rec.props}
        out: JSON = {"id": str(rec.id), "properties": props}
        if with_history:
            out["propertiesWithHistory"] = {
                n: self.history(rec, n) for n in with_history if n in self.properties
            }
        out |= {
            "createdAt": iso(rec.created),
            "updatedAt": iso(rec.updated),
            "archived": rec.archived,
        }
        if rec.archived:
            out["archivedAt"] = iso(rec.updated)
        return out

    # ----------------------------------------------------------------- writes

    def insert(self, rec: Record) -> None:
        self.records[rec.id] = rec
        self.ids.append(rec.id)
        self.modified.add(rec.updated << _ID_BITS | rec.id)
        for name, index in self.unique.items():
            value = rec.props.get(name)
            if value is not None:
                index[self._unique_key(name, value)] = rec.id

    def set_values(self, rec: Record, changes: dict[str, str | None], at: int, source: str) -> bool:
        """Apply changes (None clears), recording history; True if anything changed."""
        changed = False
        for name, new in changes.items():
            old = rec.props.get(name)
            if old == new:
                continue
            self._record_history(rec, name, old, new, at, source)
            self._reindex_unique(rec, name, old, new)
            if new is None:
                del rec.props[name]
            else:
                rec.props[name] = new
            changed = True
        if changed:
            self.touch(rec, at)
        return changed

    def touch(self, rec: Record, at: int) -> None:
        """Move the last-modified date (never backwards)."""
        if at > rec.updated:
            self.modified.remove(rec.updated << _ID_BITS | rec.id)
            rec.updated = at
            self.modified.add(rec.updated << _ID_BITS | rec.id)

    def archive(self, rec: Record, at: int) -> None:
        for name, index in self.unique.items():
            value = rec.props.get(name)
            if value is not None:
                index.pop(self._unique_key(name, value), None)
        self.modified.remove(rec.updated << _ID_BITS | rec.id)
        rec.archived = True
        rec.updated = max(at, rec.updated)
        bisect.insort(self.archived_ids, rec.id)

    def _record_history(
        self, rec: Record, name: str, old: str | None, new: str | None, at: int, source: str
    ) -> None:
        if rec.history is None:
            rec.history = {}
        entries = rec.history.get(name)
        if entries is None:
            entries = rec.history[name] = [] if old is None else [(old, rec.created, "API")]
        entries.append(("" if new is None else new, at, source))

    def _unique_key(self, name: str, value: str) -> str:
        return value.lower() if name == "email" else value

    def _reindex_unique(self, rec: Record, name: str, old: str | None, new: str | None) -> None:
        index = self.unique.get(name)
        if index is None:
            return
        if old is not None:
            index.pop(self._unique_key(name, old), None)
        if new is not None:
            index[self._unique_key(name, new)] = rec.id

    def unique_owner(self, name: str, value: str) -> int | None:
        """Id of the live record holding this unique value."""
        return self.unique[name].get(self._unique_key(name, value))


# --------------------------------------------------------------------------- writes


@dataclass
class WriteInput:
    """One input of a create/update/upsert request."""

    properties: dict[str, Any]
    id: str | None = None
    id_property: str | None = None
    associations: list[JSON] = field(default_factory=list)
    trace_id: str | None = None
    error: HubSpotError | None = None  # a failure decided before validation (fault injection)


@dataclass
class WriteOutcome:
    """Result of one input: the rendered record or an error."""

    input: WriteInput
    record: JSON | None = None
    new: bool = False
    error: HubSpotError | None = None


@dataclass
class _Plan:
    input: WriteInput
    record: Record | None
    changes: dict[str, str | None]
    links: list[tuple[str, int, int]]


@dataclass(frozen=True)
class ContactChange:
    """A change to a contact, as a webhook subscription sees it (``HubSpotStore.listeners``)."""

    kind: str  # creation | propertyChange | deletion | merge
    object_id: int
    at: int  # epoch ms, the store clock
    source: str  # HubSpot's changeSource: CRM_UI, API, FORM, MERGE...
    property_name: str | None = None
    property_value: str | None = None
    merged_ids: tuple[int, ...] = ()


# --------------------------------------------------------------------------- the store


class HubSpotStore:
    """All state of one emulated HubSpot portal."""

    def __init__(self, portal_id: int = 12345, clock: Callable[[], datetime] | None = None) -> None:
        self.portal_id = portal_id
        self.lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._next_id = 1
        self._seq = 0
        self.tables: dict[str, ObjectTable] = {t: ObjectTable(t) for t in OBJECT_TYPES}
        self._owners: list[JSON] = []
        self._assoc: dict[tuple[str, str], dict[int, dict[int, int]]] = {}
        #: (contacts|deals, companies) -> record id -> its primary company id
        self._primary: dict[tuple[str, str], dict[int, int]] = {}
        self._events: list[tuple[int, int, str, str, int, dict[str, str]]] = []
        self._email_events: list[tuple[int, int, str, str, str, str | None]] = []
        #: Called (under the lock: be quick) with every contact change, for webhooks.
        self.listeners: list[Callable[[ContactChange], None]] = []
        self._source = "CRM_UI"  # what a creation or deletion is attributed to (API in write_batch)

    # ----------------------------------------------------------------- helpers

    def _emit(self, change: ContactChange) -> None:
        for listener in list(self.listeners):
            listener(change)

    def now_ms(self) -> int:
        """The store clock in epoch ms."""
        return to_ms(self._clock())

    def _new_id(self) -> int:
        id_, self._next_id = self._next_id, self._next_id + 1
        return id_

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def table(self, object_type: str) -> ObjectTable:
        """The table for an object type name or alias."""
        return self.tables[object_type_name(object_type)]

    @staticmethod
    def _ms(value: datetime | None, default: int) -> int:
        return default if value is None else to_ms(value)

    # ----------------------------------------------------------------- owners

    def add_owner(
        self,
        email: str,
        first_name: str,
        last_name: str,
        archived: bool = False,
        user_id: int | None = None,
    ) -> str:
        """Add an owner (a HubSpot user who can own records); returns the owner id."""
        with self.lock:
            owner_id = str(100_000_000 + len(self._owners) + 1)
            uid = user_id if user_id is not None else 2_000_000 + len(self._owners) + 1
            stamp = iso(self.now_ms())
            self._owners.append(
                {
                    "id": owner_id,
                    "email": email,
                    "firstName": first_name,
                    "lastName": last_name,
                    "userId": None if archived else uid,
                    "userIdIncludingInactive": uid,
                    "type": "PERSON",
                    "teams": [],
                    "archived": archived,
                    "createdAt": stamp,
                    "updatedAt": stamp,
                }
            )
            return owner_id

    def owners(self, archived: bool | None = None, email: str | None = None) -> list[JSON]:
        """Owners as the Owners API returns them (``archived=None``: all)."""
        with self.lock:
            return [
                dict(o)
                for o in self._owners
                if (archived is None or o["archived"] == archived)
                and (email is None or o["email"].lower() == email.lower())
            ]

    def _owner_exists(self, owner_id: str) -> bool:
        return any(o["id"] == owner_id for o in self._owners)

    # ----------------------------------------------------------------- seeding

    def add_contact(self, properties: dict[str, str], created_at: datetime | None = None) -> str:
        """Seed a contact (no validation beyond unique values); returns its id."""
        return self.add_object("contacts", properties, created_at)

    def add_engagement(
        self,
        object_type: str,
        properties: dict[str, str],
        contact_ids: Sequence[str] = (),
        created_at: datetime | None = None,
    ) -> str:
        """Seed a meeting, call, note, email (or task) associated with contacts."""
        with self.lock:
            props = dict(properties)
            props.setdefault("hs_timestamp", iso(self._ms(created_at, self.now_ms())))
            id_ = self.add_object(object_type, props, created_at)
            for cid in contact_ids:
                self.associate(object_type, id_, "contacts", cid)
                if object_type != "tasks":  # HubSpot's "Last Activity Date" on the contact
                    self.update_contact(cid, {"notes_last_updated": props["hs_timestamp"]}, created_at)
            return id_

    def complete_task(
        self,
        task_id: str,
        at: datetime | None = None,
        outcome: str | None = None,
        status: str = "COMPLETED",
    ) -> None:
        """A rep completing a task in HubSpot's UI (``status``), picking ``outcome`` in the
        task's crm-handoff outcome dropdown if given; HubSpot stamps "Completed at"."""
        props = {"hs_task_status": status}
        if outcome is not None:
            props["crm_handoff_outcome"] = outcome
        self.update_object("tasks", task_id, props, at)

    def log_engagement(
        self,
        object_type: str,
        contact_id: str,
        owner_id: str,
        at: datetime | None = None,
        logged_at: datetime | None = None,
        title: str = "",
    ) -> str:
        """A rep logging a call, email or meeting on a contact in HubSpot's UI: ``at`` is
        when it happened (``hs_timestamp``), ``logged_at`` when it was logged (its create
        date; default ``at``). Moves the contact's last-activity date as HubSpot does."""
        name = object_type_name(object_type)
        title_prop = {"calls": "hs_call_title", "emails": "hs_email_subject", "meetings": "hs_meeting_title"}
        with self.lock:
            logged = logged_at or at
            props = {"hubspot_owner_id": owner_id, title_prop[name]: title or SINGULAR[name]}
            props["hs_timestamp"] = iso(self._ms(at, self.now_ms()))
            id_ = self.add_object(name, props, logged)
            rec = self._require(self.tables[name], id_)
            contact = self._require(self.tables["contacts"], contact_id)
            self._link(name, rec.id, "contacts", contact.id)
            self._logged(name, rec, "contacts", contact.id, self._ms(logged, self.now_ms()))
            return id_

    def log_call(self, contact_id: str, owner_id: str, at: datetime | None = None, **kw: Any) -> str:
        """A call logged on a contact (``log_engagement``)."""
        return self.log_engagement("calls", contact_id, owner_id, at, **kw)

    def log_email(self, contact_id: str, owner_id: str, at: datetime | None = None, **kw: Any) -> str:
        """A (one-to-one sales) email logged on a contact (``log_engagement``)."""
        return self.log_engagement("emails", contact_id, owner_id, at, **kw)

    def log_meeting(self, contact_id: str, owner_id: str, at: datetime | None = None, **kw: Any) -> str:
        """A meeting logged or booked on a contact (``log_engagement``)."""
        return self.log_engagement("meetings", contact_id, owner_id, at, **kw)

    def submit_form(self, contact_id: str, title: str = "Request a demo", at: datetime | None = None) -> str:
        """The contact submits a HubSpot form: the form-submission event (``e_submitted_form``)
        and the conversion properties HubSpot moves on the contact, source FORM
        (``recent_conversion_date``, ``recent_conversion_event_name``, ``num_conversion_events``;
        ``first_conversion_*`` the first time). Returns the event id."""
        with self.lock:
            when = at or self._clock()
            event_id = self.add_event("e_submitted_form", contact_id, when, {"hs_title": title})
            table = self.tables["contacts"]
            rec = self._require(table, contact_id)
            stamp = iso(to_ms(when))
            props = {
                "recent_conversion_date": stamp,
                "recent_conversion_event_name": title,
                "num_conversion_events": str(int(rec.props.get("num_conversion_events") or 0) + 1),
            }
            if not rec.props.get("first_conversion_date"):
                props |= {"first_conversion_date": stamp, "first_conversion_event_name": title}
            self._apply(table, rec, self._normalize(table, props, validate=False), to_ms(when), "FORM")
            return event_id

    def add_object(
        self, object_type: str, properties: dict[str, str], created_at: datetime | None = None
    ) -> str:
        """Seed any object; ``createdate``-style properties set the create time."""
        with self.lock:
            table = self.tables.get(object_type) or self.table(object_type)
            props = _seed_props(table, properties)
            created = props.pop(table.created_prop, None)
            props.pop(table.updated_prop, None)
            props.pop("hs_object_id", None)
            if created_at is not None:
                at = to_ms(created_at)
            else:
                at = (parse_time(created) if created else None) or self.now_ms()
            self._check_unique(table, None, props, {})
            return str(self._create(table, props, at).id)

    def update_contact(self, contact_id: str, properties: dict[str, str], at: datetime | None = None) -> None:
        """Change a contact as a user would (history source CRM_UI); bumps lastmodifieddate."""
        self.update_object("contacts", contact_id, properties, at)

    def update_object(
        self,
        object_type: str,
        object_id: str,
        properties: dict[str, str],
        at: datetime | None = None,
    ) -> None:
        """Seed-side update of any object."""
        with self.lock:
            table = self.table(object_type)
            rec = self._require(table, object_id)
            changes = self._normalize(table, {k: str(v) for k, v in properties.items()}, validate=False)
            self._check_unique(table, rec, changes, {})
            self._apply(table, rec, changes, self._ms(at, self.now_ms()), "CRM_UI")

    def archive_contact(self, contact_id: str) -> None:
        """Archive (soft-delete) a contact."""
        self.archive_object("contacts", contact_id)

    def archive_object(self, object_type: str, object_id: str) -> None:
        """Archive any object; it disappears from lists and search."""
        with self.lock:
            table = self.table(object_type)
            rec, now = self._require(table, object_id), self.now_ms()
            table.archive(rec, now)
            if self.listeners and table.name == "contacts":
                self._emit(ContactChange("deletion", rec.id, now, self._source))

    def merge_contacts(self, primary_id: str, merged_id: str) -> JSON:
        """Merge ``merged_id`` into ``primary_id``: fill blanks, move associations, archive it."""
        with self.lock:
            table = self.tables["contacts"]
            primary, merged = self._require(table, primary_id), self._require(table, merged_id)
            if primary is merged:
                raise validation_error("Cannot merge a contact into itself")
            fill: dict[str, str | None] = {
                k: v for k, v in merged.props.items() if primary.props.get(k) in (None, "")
            }
            for name in table.unique:
                fill.pop(name, None)
            ids = [x for x in (primary.props.get("hs_merged_object_ids") or "").split(";") if x]
            fill["hs_merged_object_ids"] = ";".join([*ids, str(merged.id)])
            now = self.now_ms()
            table.archive(merged, now)
            table.merged_into[merged.id] = primary.id
            self._apply(table, primary, fill, now, "MERGE")
            self._move_associations("contacts", merged.id, primary.id)
            if self.listeners:
                self._emit(ContactChange("merge", primary.id, now, "CRM_UI", merged_ids=(merged.id,)))
            return table.render(primary)

    def add_event(
        self,
        event_type: str,
        contact_id: str,
        occurred_at: datetime,
        properties: dict[str, str] | None = None,
    ) -> str:
        """Record a behavioural event occurrence for a contact; returns the event id."""
        with self.lock:
            seq = self._next_seq()
            event_id = str(uuid.UUID(int=(self.portal_id << 64) | seq))
            item = (
                to_ms(occurred_at),
                seq,
                event_id,
                event_type,
                int(contact_id),
                dict(properties or {}),
            )
            bisect.insort(self._events, item)
            return event_id

    def add_email_event(
        self, recipient_email: str, event_type: str, created: datetime, url: str | None = None
    ) -> str:
        """Record a marketing email event (OPEN, CLICK, DELIVERED, ...); returns its id."""
        with self.lock:
            seq = self._next_seq()
            event_id = uuid.UUID(int=seq).hex
            bisect.insort(
                self._email_events,
                (to_ms(created), seq, event_id, recipient_email, event_type.upper(), url),
            )
            return event_id

    def associate(
        self, from_type: str, from_id: str, to_type: str, to_id: str, *, primary: bool = False
    ) -> None:
        """Associate two objects with the HubSpot-defined type (both directions).

        ``primary``: also the "Primary" type (a contact's or deal's primary company).
        Seeding only: the contact's last-activity date is left alone (see ``add_engagement``).
        """
        with self.lock:
            a, b = object_type_name(from_type), object_type_name(to_type)
            self._require(self.tables[a], from_id)
            self._require(self.tables[b], to_id)
            self._link(a, int(from_id), b, int(to_id), primary=primary)

    def associate_api(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """An association made through the API: as ``associate``, plus what HubSpot
        recalculates (an activity moves its contact's last-activity date)."""
        with self.lock:
            a, b = object_type_name(from_type), object_type_name(to_type)
            rec_a, rec_b = self._require(self.tables[a], from_id), self._require(self.tables[b], to_id)
            self._link(a, rec_a.id, b, rec_b.id)
            self._logged(a, rec_a, b, rec_b.id, self.now_ms())

    # ----------------------------------------------------------------- inspection

    def contact(self, contact_id: str) -> dict[str, str]:
        """Current properties of a contact (KeyError if missing)."""
        return self.object("contacts", contact_id)

    def object(self, object_type: str, object_id: str) -> dict[str, str]:
        """Current properties of any live object (KeyError if missing)."""
        with self.lock:
            table = self.table(object_type)
            rec = table.get(int(object_id))
            if rec is None:
                raise KeyError(object_id)
            return table.all_values(rec)

    def contacts(self, include_archived: bool = False) -> list[dict[str, str]]:
        """All contacts' current properties, by id."""
        return [o["properties"] for o in self.objects("contacts", include_archived)]

    def tasks(self) -> list[JSON]:
        """All live tasks: ``{"id", "properties", "associations": {"contacts": [ids]}}``."""
        return self.objects("tasks")

    def objects(self, object_type: str, include_archived: bool = False) -> list[JSON]:
        """Objects of a type as ``{"id", "properties", "associations"}``, by id."""
        with self.lock:
            name = object_type_name(object_type)
            table = self.tables[name]
            out = []
            for id_ in table.ids:
                rec = table.records[id_]
                if rec.archived and not include_archived:
                    continue
                assoc = {
                    to: [str(t) for t in sorted(self._assoc.get((frm, to), {}).get(id_, {}))]
                    for frm, to in ASSOCIATION_TYPES
                    if frm == name
                }
                out.append({"id": str(id_), "properties": table.all_values(rec), "associations": assoc})
            return out

    def associations(self, from_type: str, from_id: str, to_type: str) -> dict[str, int]:
        """Associated ids -> association type id."""
        with self.lock:
            key = (object_type_name(from_type), object_type_name(to_type))
            links = self._assoc.get(key, {}).get(int(from_id), {})
            return {str(k): v for k, v in links.items()}

    def property(self, object_type: str, name: str) -> JSON | None:
        """A property definition, or None."""
        with self.lock:
            found = self.table(object_type).properties.get(name)
            return None if found is None else json.loads(json.dumps(found))

    def update_property(self, object_type: str, name: str, body: JSON) -> JSON:
        """Change a property from a ``PropertyUpdate`` body: label, type, field type, options."""
        with self.lock:
            found = self.table(object_type).properties.get(name)
            if found is None:
                raise HubSpotError(404, "OBJECT_NOT_FOUND", f"Unable to find property named '{name}'")
            if found.get("hubspotDefined"):
                raise HubSpotError(400, "VALIDATION_ERROR", f"Property {name} is HubSpot-defined: read only")
            for key in ("label", "type", "fieldType", "groupName", "description", "displayOrder"):
                if key in body:
                    found[key] = body[key]
            if "options" in body:
                found["options"] = [
                    {
                        "value": str(o["value"]),
                        "label": str(o.get("label", o["value"])),
                        "displayOrder": o.get("displayOrder", i),
                        "hidden": bool(o.get("hidden", False)),
                    }
                    for i, o in enumerate(body["options"] or [])
                ]
            found["updatedAt"] = iso(self.now_ms())
            out: JSON = json.loads(json.dumps(found))
            return out

    def properties(self, object_type: str, archived: bool = False) -> list[JSON]:
        """All property definitions of an object type."""
        with self.lock:
            defs = self.table(object_type).properties.values()
            return [json.loads(json.dumps(d)) for d in defs if d["archived"] == archived]

    def property_groups(self, object_type: str) -> list[JSON]:
        """Property groups of an object type."""
        with self.lock:
            return [dict(g) for g in self.table(object_type).groups.values()]

    def create_property_group(self, object_type: str, body: JSON) -> JSON:
        """Create a property group (409 if it exists)."""
        with self.lock:
            table = self.table(object_type)
            name, label = body.get("name"), body.get("label")
            if not name or not label:
                raise validation_error("name and label are required")
            if name in table.groups:
                raise HubSpotError(409, "OBJECT_ALREADY_EXISTS", f"Property group {name} already exists.")
            order = body.get("displayOrder", -1)
            group = {"name": name, "label": label, "displayOrder": order, "archived": False}
            table.groups[name] = group
            return dict(group)

    def create_property(self, object_type: str, body: JSON) -> JSON:
        """Create a custom property from a ``PropertyCreate`` body (409 if it exists)."""
        with self.lock:
            table = self.table(object_type)
            name = _check_property_body(table, body)
            if name in table.properties:
                raise HubSpotError(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.")
            options = [(str(o["value"]), str(o.get("label", o["value"]))) for o in body.get("options") or []]
            d = property_def(
                name,
                body["label"],
                body["groupName"],
                body["type"],
                body["fieldType"],
                options,
                unique=bool(body.get("hasUniqueValue")),
                hubspot_defined=False,
            )
            d["description"] = body.get("description") or ""
            d["displayOrder"] = body.get("displayOrder", -1)
            d["createdAt"] = d["updatedAt"] = iso(self.now_ms())
            table.properties[name] = d
            if d["hasUniqueValue"]:
                table.unique[name] = {
                    table._unique_key(name, r.props[name]): r.id
                    for r in table.records.values()
                    if not r.archived and name in r.props
                }
            out: JSON = json.loads(json.dumps(d))
            return out

    def summary(self) -> JSON:
        """Counts per object type (live records), owners, events."""
        with self.lock:
            counts = {n: len(t.records) - len(t.archived_ids) for n, t in self.tables.items()}
            return {
                "portalId": self.portal_id,
                "objects": counts,
                "archived": {n: len(t.archived_ids) for n, t in self.tables.items()},
                "owners": len(self._owners),
                "events": len(self._events),
                "emailEvents": len(self._email_events),
            }

    # ----------------------------------------------------------------- internals

    def _require(self, table: ObjectTable, object_id: str | int) -> Record:
        rec = table.get(int(object_id)) if str(object_id).isdigit() else None
        if rec is None:
            raise HubSpotError(
                404, "OBJECT_NOT_FOUND", f"{SINGULAR[table.name].title()} {object_id} not found"
            )
        return rec

    def _create(self, table: ObjectTable, props: dict[str, str], at: int) -> Record:
        """Insert a record; ``props`` must be normalised, interned and free of blanks."""
        if table.name == "contacts" and props.get("lifecyclestage"):
            props.update(self._stage_dates(props, at))
        if table.name == "deals":
            props.setdefault("pipeline", "default")
            props.update({k: v for k, v in _deal_flags(props.get("dealstage")).items() if v is not None})
        if table.name == "tasks" and props.get("hs_task_status") == "COMPLETED":
            props.setdefault("hs_task_completion_date", iso(at))
        rec = Record(self._new_id(), props, at)
        table.insert(rec)
        if self.listeners and table.name == "contacts":
            self._emit(ContactChange("creation", rec.id, at, self._source))
        return rec

    def _apply(
        self, table: ObjectTable, rec: Record, changes: dict[str, str | None], at: int, source: str
    ) -> None:
        stage = changes.get("lifecyclestage")
        if table.name == "contacts" and stage and stage != rec.props.get("lifecyclestage"):
            changes = {**changes, **self._stage_dates({"lifecyclestage": stage}, at)}
        if table.name == "deals" and "dealstage" in changes:
            changes = {**changes, **_deal_flags(changes["dealstage"])}
        if table.name == "tasks" and "hs_task_status" in changes:
            changes = {**changes, **_completion(rec, changes["hs_task_status"], at)}
        moved = self._moving(table, rec, changes)
        table.set_values(rec, {sys.intern(k): v for k, v in changes.items()}, at, source)
        for name in moved:
            self._emit(ContactChange("propertyChange", rec.id, at, source, name, rec.props.get(name)))

    def _moving(self, table: ObjectTable, rec: Record, changes: Mapping[str, str | None]) -> list[str]:
        """The contact properties ``changes`` moves, when someone listens (webhooks)."""
        if not self.listeners or table.name != "contacts":
            return []
        return [k for k, v in changes.items() if rec.props.get(k) != v]

    @staticmethod
    def _stage_dates(props: dict[str, str], at: int) -> dict[str, str]:
        stage = props["lifecyclestage"]
        return {f"hs_lifecyclestage_{stage}_date": iso(at)} if stage in LIFECYCLE_STAGES else {}

    def _link(self, a: str, a_id: int, b: str, b_id: int, *, primary: bool = False) -> None:
        if (a, b) not in ASSOCIATION_TYPES:
            raise validation_error(
                f"{SINGULAR[a]} to {SINGULAR[b]} is not a valid association",
                sub_category="crm.associations.INVALID_OBJECT_TYPE",
            )
        self._assoc.setdefault((a, b), {}).setdefault(a_id, {})[b_id] = ASSOCIATION_TYPES[(a, b)]
        self._assoc.setdefault((b, a), {}).setdefault(b_id, {})[a_id] = ASSOCIATION_TYPES[(b, a)]
        if primary:
            holder, company = ((a, a_id), b_id) if b == "companies" else ((b, b_id), a_id)
            key = (holder[0], "companies")
            if key not in PRIMARY_TYPES:
                raise validation_error(f"{SINGULAR[a]} to {SINGULAR[b]} has no primary association type")
            self._primary.setdefault(key, {})[holder[1]] = company
            if holder[0] == "contacts":
                rec = self.tables["contacts"].get(holder[1])
                if rec is not None:
                    self._apply(self.tables["contacts"], rec, {"associatedcompanyid": str(company)},
                                self.now_ms(), "CALCULATED")  # fmt: skip

    def _logged(self, a: str, rec: Record, b: str, b_id: int, now: int) -> None:
        """An activity logged on a contact moves the contact's "Last Activity Date"
        (``notes_last_updated``, to the activity's time if later) and so its
        ``lastmodifieddate`` (to now), as HubSpot recalculates them."""
        if a not in ACTIVITY_TYPES or b != "contacts":
            return
        contacts = self.tables["contacts"]
        contact = contacts.get(b_id)
        if contact is None:
            return
        at = parse_time(rec.props.get("hs_timestamp") or "") or now
        current = parse_time(contact.props.get("notes_last_updated") or "")
        if current is None or at > current:
            self._apply(contacts, contact, {"notes_last_updated": iso(at)}, now, "CALCULATED")

    def primary_company(self, object_type: str, object_id: str) -> str | None:
        """The primary company id of a contact or deal, if it has one."""
        with self.lock:
            found = self._primary.get((object_type_name(object_type), "companies"), {}).get(int(object_id))
            return None if found is None else str(found)

    def _move_associations(self, object_type: str, old: int, new: int) -> None:
        for (a, b), links in list(self._assoc.items()):
            if a != object_type or old not in links:
                continue
            for other in list(links.pop(old)):
                self._assoc[(b, a)].get(other, {}).pop(old, None)
                self._link(a, new, b, other)

    # ----------------------------------------------------------------- validation

    def _normalize(
        self,
        table: ObjectTable,
        props: dict[str, Any],
        *,
        validate: bool,
        current: Record | None = None,
    ) -> dict[str, str | None]:
        """Validated, normalised changes ("" clears -> None). Raises HubSpotError per record."""
        out: dict[str, str | None] = {}
        for name, raw in props.items():
            value = "" if raw is None else str(raw)
            definition = table.properties.get(name)
            if definition is None:
                out[name] = value or None
                continue
            out[name] = self._normalize_value(table, definition, value, validate) if value else None
        if validate and table.name == "contacts":
            self._check_lifecycle(table, out.get("lifecyclestage"), current)
        return out

    def _normalize_value(self, table: ObjectTable, d: JSON, value: str, validate: bool) -> str:
        name, type_ = d["name"], d["type"]
        if validate and d["modificationMetadata"]["readOnlyValue"]:
            raise property_error(name, "READ_ONLY_VALUE", f'Property "{name}" is read-only')
        if type_ in ("datetime", "date"):
            ms = parse_time(value)
            if ms is None:
                raise property_error(name, "INVALID_DATE", f'"{value}" is not a valid date for {name}')
            return iso(ms) if type_ == "datetime" else iso(ms)[:10]
        if not validate:
            return sys.intern(value) if type_ == "enumeration" else value
        if type_ == "number":
            try:
                float(value)
            except ValueError:
                raise property_error(name, "INVALID_NUMBER", f'"{value}" is not a number') from None
        elif type_ == "bool" and value.lower() not in ("true", "false"):
            raise property_error(name, "INVALID_BOOLEAN", f'"{value}" is not a boolean')
        elif name == "hubspot_owner_id":
            if not self._owner_exists(value):
                raise property_error(name, "INVALID_OWNER_ID", f'"{value}" is not a valid owner id')
        elif type_ == "enumeration":
            allowed = [o["value"] for o in d["options"]]
            if value not in allowed:
                msg = f"{value} was not one of the allowed options: {allowed}"
                raise property_error(name, "INVALID_OPTION", msg)
            return sys.intern(value)
        return value

    def _check_lifecycle(self, table: ObjectTable, new: str | None, current: Record | None) -> None:
        old = current.props.get("lifecyclestage") if current else None
        if not new or not old or new == old:
            return
        order = [o["value"] for o in table.properties["lifecyclestage"]["options"]]
        if old in order and order.index(new) < order.index(old):
            msg = (
                f'lifecyclestage cannot be moved backward from "{old}" to "{new}"; '
                "clear it first (set it to an empty string)"
            )
            raise property_error("lifecyclestage", "INVALID_LIFECYCLE_STAGE", msg)

    def _check_unique(
        self,
        table: ObjectTable,
        rec: Record | None,
        changes: Mapping[str, str | None],
        claims: dict[tuple[str, str], str],
    ) -> None:
        for name in table.unique:
            value = changes.get(name)
            if value is None:
                continue
            key = (name, table._unique_key(name, value))
            holder = table.unique_owner(name, value)
            if holder is not None and (rec is None or holder != rec.id):
                raise self._conflict(table, name, value, str(holder))
            if key in claims and claims[key] != (str(rec.id) if rec else ""):
                raise self._conflict(table, name, value, "another input of this batch")
            claims[key] = str(rec.id) if rec else ""

    @staticmethod
    def _conflict(table: ObjectTable, name: str, value: str, holder: str) -> HubSpotError:
        label = SINGULAR[table.name].title()
        msg = f'{label} already exists with {name}="{value}". Existing ID: {holder}'
        if not holder.isdigit():
            msg = f'{label} {name}="{value}" is used by {holder}'
        return HubSpotError(
            409,
            "CONFLICT",
            msg,
            sub_category="UNIQUE_VALUE_CONFLICT",
            errors=[{"message": msg, "code": "UNIQUE_VALUE_CONFLICT", "in": name}],
            context={"propertyName": [name], "existingId": [holder]},
        )

    # ----------------------------------------------------------------- API writes

    def write_batch(
        self, object_type: str, kind: str, inputs: Sequence[WriteInput], *, partial: bool
    ) -> list[WriteOutcome]:
        """Validate then apply a batch (``kind``: create, update or upsert).

        With ``partial`` (HubSpot: inputs carry ``objectWriteTraceId``) valid inputs are
        written and failures reported per input; otherwise any failure rejects the whole
        batch by raising :class:`HubSpotError`. Undefined properties always fail the batch.
        """
        with self.lock:
            table = self.table(object_type)
            self._check_defined(table, inputs, kind)
            claims: dict[tuple[str, str], str] = {}
            plans: list[_Plan | WriteOutcome] = []
            for inp in inputs:
                try:
                    plans.append(self._plan(table, kind, inp, claims))
                except HubSpotError as err:
                    plans.append(WriteOutcome(inp, error=_with_trace(err, inp.trace_id)))
            failures = [p.error for p in plans if isinstance(p, WriteOutcome) and p.error]
            if failures and not partial:
                raise _batch_failure(failures)
            now = self.now_ms()
            self._source = "API"
            try:
                return [p if isinstance(p, WriteOutcome) else self._execute(table, p, now) for p in plans]
            finally:
                self._source = "CRM_UI"

    def _check_defined(self, table: ObjectTable, inputs: Sequence[WriteInput], kind: str) -> None:
        missing = sorted({n for i in inputs for n in i.properties if n not in table.properties})
        if kind == "upsert":
            missing += [
                i.id_property for i in inputs if i.id_property and i.id_property not in table.properties
            ]
        if missing:
            details = [
                {
                    "isValid": False,
                    "message": f'Property "{n}" does not exist',
                    "error": "PROPERTY_DOESNT_EXIST",
                    "name": n,
                }
                for n in missing
            ]
            raise validation_error(
                f"Property values were not valid: {json.dumps(details)}",
                errors=[
                    {"message": d["message"], "code": "PROPERTY_DOESNT_EXIST", "in": d["name"]}
                    for d in details
                ],
            )

    def _plan(
        self, table: ObjectTable, kind: str, inp: WriteInput, claims: dict[tuple[str, str], str]
    ) -> _Plan:
        if inp.error is not None:
            raise inp.error
        rec = self._target(table, kind, inp)
        props = dict(inp.properties)
        if kind == "upsert" and rec is None and inp.id_property and inp.id_property != "hs_object_id":
            props.setdefault(inp.id_property, inp.id)
        changes = self._normalize(table, props, validate=True, current=rec)
        if rec is None and table.name in ("tasks", *ENGAGEMENT_TYPES) and not changes.get("hs_timestamp"):
            raise property_error("hs_timestamp", "REQUIRED_PROPERTY", "hs_timestamp is required")
        if rec is None and table.name == "deals":
            for name in ("dealname", "dealstage"):
                if not changes.get(name):
                    raise property_error(name, "REQUIRED_PROPERTY", f"{name} is required to create a deal")
        self._check_unique(table, rec, changes, claims)
        return _Plan(inp, rec, changes, self._plan_links(table, inp.associations))

    def _target(self, table: ObjectTable, kind: str, inp: WriteInput) -> Record | None:
        if kind == "create":
            return None
        if inp.id is None:
            raise validation_error("Input is missing an id")
        prop = inp.id_property or "hs_object_id"
        if prop == "hs_object_id":
            rec = table.get(int(inp.id)) if inp.id.isdigit() else None
        elif prop in table.unique:
            holder = table.unique_owner(prop, inp.id)
            rec = None if holder is None else table.get(holder)
        else:
            raise validation_error(f"{prop} is not a unique property and cannot be used as idProperty")
        if rec is None and kind == "update":
            raise HubSpotError(
                404,
                "OBJECT_NOT_FOUND",
                f"Object not found. objectId are usually numeric. ({prop}={inp.id})",
                context={"ids": [inp.id]},
            )
        return rec

    def _plan_links(self, table: ObjectTable, associations: list[JSON]) -> list[tuple[str, int, int]]:
        links = []
        for assoc in associations:
            to_id = str((assoc.get("to") or {}).get("id", ""))
            for spec in assoc.get("types") or [{}]:
                type_id = spec.get("associationTypeId")
                target = next(
                    (
                        b
                        for (a, b), t in (*ASSOCIATION_TYPES.items(), *PRIMARY_TYPES.items())
                        if a == table.name and t == type_id
                    ),
                    None,
                )
                if target is None:
                    raise validation_error(
                        f"{type_id} is not a valid association type id for {table.name}",
                        sub_category="crm.associations.INVALID_ASSOCIATION_TYPE",
                    )
                if not to_id.isdigit() or self.tables[target].get(int(to_id)) is None:
                    raise validation_error(
                        f"Invalid association: {SINGULAR[target]} {to_id} does not exist",
                        sub_category="crm.associations.INVALID_OBJECT_IDS",
                        context={"toObjectId": [to_id]},
                    )
                links.append((target, int(to_id), type_id))
        return links

    def _execute(self, table: ObjectTable, plan: _Plan, now: int) -> WriteOutcome:
        rec, new = plan.record, plan.record is None
        if rec is None:
            props = {sys.intern(k): v for k, v in plan.changes.items() if v is not None}
            rec = self._create(table, props, now)
        else:
            self._apply(table, rec, plan.changes, now, "API")
        for target, to_id, type_id in plan.links:
            self._link(
                table.name, rec.id, target, to_id, primary=PRIMARY_TYPES.get((table.name, target)) == type_id
            )
            self._logged(table.name, rec, target, to_id, now)
        names = [n for n in plan.input.properties if n in table.properties]
        if plan.input.id_property and plan.input.id_property in table.properties:
            names.append(plan.input.id_property)
        out = table.render(rec, names or None)
        if plan.input.trace_id:
            out["objectWriteTraceId"] = plan.input.trace_id
        return WriteOutcome(plan.input, out, new)

    # ----------------------------------------------------------------- API reads

    def page(
        self,
        object_type: str,
        after: str | None,
        limit: int,
        properties: Sequence[str] | None = None,
        with_history: Sequence[str] = (),
        archived: bool = False,
    ) -> tuple[list[JSON], str | None]:
        """One page of objects in id order; ``after`` is the next id to return."""
        with self.lock:
            table = self.table(object_type)
            ids = table.archived_ids if archived else table.ids
            start = bisect.bisect_left(ids, int(after)) if after and after.isdigit() else 0
            out: list[JSON] = []
            for pos in range(start, len(ids)):
                rec = table.records[ids[pos]]
                if rec.archived != archived:
                    continue
                if len(out) == limit:
                    return out, str(rec.id)
                out.append(table.render(rec, properties, with_history))
            return out, None

    def read(
        self,
        object_type: str,
        ids: Sequence[str],
        properties: Sequence[str] | None = None,
        with_history: Sequence[str] = (),
        id_property: str | None = None,
    ) -> tuple[list[JSON], list[str]]:
        """Objects by id (or unique property value); returns (found, missing ids)."""
        with self.lock:
            table = self.table(object_type)
            found, missing = [], []
            for raw in ids:
                rec = self._lookup(table, str(raw), id_property)
                if rec is None:
                    missing.append(str(raw))
                else:
                    found.append(table.render(rec, properties, with_history))
            return found, missing

    def _lookup(self, table: ObjectTable, value: str, id_property: str | None) -> Record | None:
        if id_property and id_property != "hs_object_id":
            if id_property not in table.unique:
                raise validation_error(f"{id_property} is not a unique property")
            holder = table.unique_owner(id_property, value)
            return None if holder is None else table.get(holder)
        return table.get(int(value)) if value.isdigit() else None

    def get_one(
        self,
        object_type: str,
        object_id: str,
        properties: Sequence[str] | None = None,
        with_history: Sequence[str] = (),
        id_property: str | None = None,
    ) -> JSON:
        """One object (HubSpotError 404 if missing)."""
        found, _ = self.read(object_type, [object_id], properties, with_history, id_property)
        if not found:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")
        return found[0]

    def association_page(
        self,
        from_type: str,
        to_type: str,
        ids: Sequence[str],
        afters: Mapping[str, str] | None = None,
        limit: int = ASSOCIATION_PAGE,
    ) -> tuple[list[JSON], list[str]]:
        """v4 association reads: per id up to ``limit`` associated records from its
        ``after`` cursor (with ``paging.next.after`` when there are more), and the ids
        without any association."""
        with self.lock:
            a, b = object_type_name(from_type), object_type_name(to_type)
            links = self._assoc.get((a, b), {})
            primary = self._primary_of(a, b)
            results, empty = [], []
            for raw in ids:
                targets = links.get(int(raw)) if str(raw).isdigit() else None
                live = [(t, typ) for t, typ in sorted((targets or {}).items()) if self.tables[b].get(t)]
                cursor = (afters or {}).get(str(raw))
                start = int(cursor) if cursor and cursor.isdigit() else 0
                page = live[start : start + limit]
                if not page:
                    empty.append(str(raw))
                    continue
                row: JSON = {
                    "from": {"id": str(raw)},
                    "to": [
                        {"toObjectId": t, "associationTypes": self._types(a, b, int(raw), t, typ, primary)}
                        for t, typ in page
                    ],
                }
                if start + limit < len(live):
                    row["paging"] = {"next": {"after": str(start + limit)}}
                results.append(row)
            return results, empty

    def _primary_of(self, a: str, b: str) -> dict[int, int] | None:
        """record id -> primary company id, for ``a`` -> ``b`` reads that can show one."""
        if b == "companies":
            return self._primary.get((a, "companies"))
        if a == "companies":
            return self._primary.get((b, "companies"))
        return None

    @staticmethod
    def _types(a: str, b: str, a_id: int, b_id: int, typ: int, primary: dict[int, int] | None) -> list[JSON]:
        out = [{"category": "HUBSPOT_DEFINED", "typeId": typ, "label": None}]
        is_primary = primary is not None and (
            primary.get(a_id) == b_id if b == "companies" else primary.get(b_id) == a_id
        )
        if is_primary:
            out.insert(
                0, {"category": "HUBSPOT_DEFINED", "typeId": PRIMARY_TYPES[(a, b)], "label": "Primary"}
            )
        return out

    # ----------------------------------------------------------------- search

    def search(self, object_type: str, request: JSON) -> tuple[int, list[JSON], int | None]:
        """Run a CRM search; returns (total, page of rendered results, next offset)."""
        with self.lock:
            table = self.table(object_type)
            limit = _int(request.get("limit"), 10, "limit")
            if not 0 < limit <= 200:
                raise validation_error("limit must be between 1 and 200")
            offset = _int(request.get("after"), 0, "after")
            if offset + limit > SEARCH_MAX_RESULTS:
                raise validation_error(
                    f"Search results are limited to {SEARCH_MAX_RESULTS} total results; "
                    f"after={offset} with limit={limit} pages beyond it",
                    sub_category="crm.search.PAGINATION_LIMIT_EXCEEDED",
                )
            query = _Search(self, table, request)
            total, records = query.run(offset, limit)
            props = request.get("properties") or None
            page = [table.render(r, props) for r in records]
            nxt = offset + limit if offset + limit < total else None
            return total, page, nxt

    # ----------------------------------------------------------------- events

    def events_page(
        self,
        *,
        event_type: str | None,
        object_id: str | None,
        occurred_after: int | None,
        occurred_before: int | None,
        descending: bool,
        after: str | None,
        limit: int,
    ) -> tuple[list[JSON], str | None]:
        """Behavioural events by occurrence time (after: inclusive, before: exclusive)."""
        with self.lock:
            events = self._events
            lo = 0 if occurred_after is None else bisect.bisect_left(events, (occurred_after,))
            hi = len(events) if occurred_before is None else bisect.bisect_left(events, (occurred_before,))
            cursor = _decode_cursor(after)
            if cursor is not None:
                if descending:
                    hi = min(hi, bisect.bisect_left(events, cursor))
                else:
                    lo = max(lo, bisect.bisect_left(events, (cursor[0], cursor[1] + 1)))
            positions = range(hi - 1, lo - 1, -1) if descending else range(lo, hi)
            out: list[JSON] = []
            last = (0, 0)
            for pos in positions:
                ms, seq, eid, etype, oid, props = events[pos]
                if (event_type and etype != event_type) or (object_id and str(oid) != object_id):
                    continue
                if len(out) == limit:
                    return out, _encode_cursor(*last)
                out.append(
                    {
                        "objectType": "CONTACT",
                        "objectId": str(oid),
                        "eventType": etype,
                        "occurredAt": iso(ms),
                        "id": eid,
                        "properties": dict(props),
                    }
                )
                last = (ms, seq)
            return out, None

    def email_events_page(
        self,
        *,
        event_type: str | None,
        recipient: str | None,
        start: int | None,
        end: int | None,
        offset: str | None,
        limit: int,
    ) -> tuple[list[JSON], str | None]:
        """Legacy email events, oldest first (start/end inclusive, epoch ms)."""
        with self.lock:
            events = self._email_events
            lo = 0 if start is None else bisect.bisect_left(events, (start,))
            hi = len(events) if end is None else bisect.bisect_left(events, (end + 1,))
            cursor = _decode_cursor(offset)
            if cursor is not None:
                lo = max(lo, bisect.bisect_left(events, (cursor[0], cursor[1] + 1)))
            out: list[JSON] = []
            last = (0, 0)
            for pos in range(lo, hi):
                ms, seq, eid, rcpt, etype, url = events[pos]
                if (event_type and etype != event_type.upper()) or (
                    recipient and rcpt.lower() != recipient.lower()
                ):
                    continue
                if len(out) == limit:
                    return out, _encode_cursor(*last)
                item: JSON = {
                    "id": eid,
                    "recipient": rcpt,
                    "type": etype,
                    "created": ms,
                    "portalId": self.portal_id,
                    "appId": 113,
                    "appName": "BatchEmail",
                    "emailCampaignId": 1000 + seq % 7,
                }
                if url is not None:
                    item["url"] = url
                out.append(item)
                last = (ms, seq)
            return out, None

    # ----------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> None:
        """Write the whole portal to a JSON file."""
        with self.lock:
            data = {
                "version": 1,
                "portalId": self.portal_id,
                "nextId": self._next_id,
                "seq": self._seq,
                "owners": self._owners,
                "tables": {n: self._dump_table(t) for n, t in self.tables.items()},
                "associations": [
                    [a, b, frm, to, typ]
                    for (a, b), links in self._assoc.items()
                    for frm, targets in links.items()
                    for to, typ in targets.items()
                ],
                "primary": [
                    [a, frm, to] for (a, _), links in self._primary.items() for frm, to in links.items()
                ],
                "events": self._events,
                "emailEvents": self._email_events,
            }
        Path(path).write_text(json.dumps(data, separators=(",", ":")))

    @staticmethod
    def _dump_table(t: ObjectTable) -> JSON:
        custom = [d for d in t.properties.values() if not d["hubspotDefined"]]
        return {
            "customProperties": custom,
            "groups": list(t.groups.values()),
            "mergedInto": [[k, v] for k, v in t.merged_into.items()],
            "records": [
                [r.id, r.props, r.created, r.updated, r.archived, r.history]
                for r in (t.records[i] for i in t.ids)
            ],
        }

    @classmethod
    def load(cls, path: str | Path) -> HubSpotStore:
        """Read a portal written by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        store = cls(portal_id=data["portalId"])
        store._next_id, store._seq = data["nextId"], data["seq"]
        store._owners = data["owners"]
        for name, dumped in data["tables"].items():
            _load_table(store.tables[name], dumped)
        for a, b, frm, to, typ in data["associations"]:
            store._assoc.setdefault((a, b), {}).setdefault(frm, {})[to] = typ
        for a, frm, to in data.get("primary", []):
            store._primary.setdefault((a, "companies"), {})[frm] = to
        store._events = [(m, s, i, t, o, p) for m, s, i, t, o, p in data["events"]]
        store._email_events = [(m, s, i, r, t, u) for m, s, i, r, t, u in data["emailEvents"]]
        return store


def _load_table(table: ObjectTable, dumped: JSON) -> None:
    for d in dumped["customProperties"]:
        table.properties[d["name"]] = d
        if d.get("hasUniqueValue"):
            table.unique.setdefault(d["name"], {})
    table.groups |= {g["name"]: g for g in dumped["groups"]}
    table.merged_into = {int(k): int(v) for k, v in dumped["mergedInto"]}
    keys = []
    for id_, props, created, updated, archived, history in dumped["records"]:
        rec = Record(id_, {sys.intern(k): v for k, v in props.items()}, created)
        rec.updated, rec.archived = updated, archived
        if history is not None:
            rec.history = {k: [(e[0], e[1], e[2]) for e in v] for k, v in history.items()}
        table.records[id_] = rec
        table.ids.append(id_)
        if archived:
            table.archived_ids.append(id_)
            continue
        keys.append(updated << _ID_BITS | id_)
        for name, index in table.unique.items():
            if name in props:
                index[table._unique_key(name, props[name])] = id_
    table.modified = SortedKeys(keys)


def _completion(rec: Record, status: str | None, at: int) -> dict[str, str | None]:
    """A task's calculated "Completed at": stamped when it becomes COMPLETED, cleared
    when it is reopened, untouched while it stays completed."""
    if status != "COMPLETED":
        return {"hs_task_completion_date": None}
    if rec.props.get("hs_task_status") == "COMPLETED" and rec.props.get("hs_task_completion_date"):
        return {}
    return {"hs_task_completion_date": iso(at)}


def _deal_flags(stage: str | None) -> dict[str, str | None]:
    """HubSpot's calculated ``hs_is_closed`` / ``hs_is_closed_won`` for a deal stage."""
    for value, _, won, closed in DEAL_STAGES:
        if value == stage:
            return {"hs_is_closed": str(closed).lower(), "hs_is_closed_won": str(won).lower()}
    return {"hs_is_closed": None, "hs_is_closed_won": None}


def _seed_props(table: ObjectTable, properties: dict[str, Any]) -> dict[str, str]:
    """Seed values as stored: strings, blanks dropped, dates normalised, names interned."""
    defs = table.properties
    out: dict[str, str] = {}
    for name, raw in properties.items():
        if raw is None or raw == "":
            continue
        value = raw if isinstance(raw, str) else str(raw)
        d = defs.get(name)
        if d is not None:
            kind = d["type"]
            if kind == "enumeration":
                value = sys.intern(value)
            elif kind in ("datetime", "date"):
                ms = parse_time(value)
                if ms is None:
                    raise ValueError(f"{name}: {value!r} is not a date")
                value = iso(ms) if kind == "datetime" else iso(ms)[:10]
        out[sys.intern(name)] = value
    return out


_PROPERTY_TYPES = ("string", "number", "date", "datetime", "enumeration", "bool")
_FIELD_TYPES = frozenset(
    [
        "textarea",
        "text",
        "date",
        "file",
        "number",
        "select",
        "radio",
        "checkbox",
        "booleancheckbox",
        "calculation_equation",
    ]
)
_PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _check_property_body(table: ObjectTable, body: JSON) -> str:
    missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
    if missing:
        raise validation_error(f"Missing required fields: {', '.join(missing)}")
    name = str(body["name"])
    if not _PROPERTY_NAME.fullmatch(name):
        raise validation_error(f"Invalid property name '{name}': use lowercase letters, digits, _")
    if body["type"] not in _PROPERTY_TYPES or body["fieldType"] not in _FIELD_TYPES:
        raise validation_error(f"Invalid type/fieldType: {body['type']}/{body['fieldType']}")
    if body["groupName"] not in table.groups:
        raise validation_error(f"Property group {body['groupName']} does not exist")
    if body["type"] == "enumeration" and not body.get("options"):
        raise validation_error("Enumeration properties need options")
    return name


def _with_trace(err: HubSpotError, trace_id: str | None) -> HubSpotError:
    if trace_id:
        err.context = {**err.context, "objectWriteTraceId": [trace_id]}
    return err


def _batch_failure(errors: list[HubSpotError]) -> HubSpotError:
    first = errors[0]
    status = 409 if all(e.status == 409 for e in errors) else 400
    details = [d for e in errors for d in (e.errors or [{"message": e.message}])]
    return HubSpotError(
        status,
        first.category,
        first.message if len(errors) == 1 else f"{len(errors)} inputs failed: {first.message}",
        sub_category=first.sub_category,
        errors=details,
        context=first.context,
    )


def _int(value: Any, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise validation_error(f"{name} must be an integer, got {value!r}") from None


def _encode_cursor(ms: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{ms}:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        ms, seq = raw.split(":")
        return int(ms), int(seq)
    except (ValueError, UnicodeDecodeError):
        raise validation_error(f"Invalid paging cursor: {value}") from None


# --------------------------------------------------------------------------- search engine


_TOKEN_SPLIT = re.compile(r"[^\w]+")
_WORD_SPLIT = re.compile(r"[\s@,;]+")
Predicate = Callable[[Record], bool]


class _Search:
    """One compiled search request against one table."""

    def __init__(self, store: HubSpotStore, table: ObjectTable, request: JSON) -> None:
        self.store, self.table = store, table
        groups = request.get("filterGroups") or []
        self._check_limits(groups)
        self.groups = [[self._compile(f) for f in g.get("filters") or []] for g in groups]
        self.raw_groups = [g.get("filters") or [] for g in groups]
        self.query = (request.get("query") or "").strip().lower()
        self.sorts = [self._parse_sort(s) for s in request.get("sorts") or []]

    @staticmethod
    def _check_limits(groups: list[JSON]) -> None:
        sizes = [len(g.get("filters") or []) for g in groups]
        if (
            len(groups) > SEARCH_MAX_GROUPS
            or any(s > SEARCH_MAX_FILTERS for s in sizes)
            or sum(sizes) > SEARCH_MAX_TOTAL_FILTERS
        ):
            raise validation_error(
                f"Too many filters: at most {SEARCH_MAX_GROUPS} filterGroups with up to "
                f"{SEARCH_MAX_FILTERS} filters each, {SEARCH_MAX_TOTAL_FILTERS} filters in total",
                sub_category="crm.search.TOO_MANY_FILTERS",
            )

    # ----------------------------------------------------------------- values

    def kind(self, name: str) -> str:
        if name == "hs_object_id":
            return "id"
        d = self.table.properties.get(name)
        if d is None:
            raise validation_error(f"Property {name} does not exist on {self.table.name}")
        return {"datetime": "time", "date": "time", "number": "number", "enumeration": "enum"}.get(
            d["type"], "string"
        )

    def getter(self, name: str) -> Callable[[Record], Any]:
        """Typed comparable value of a property on a record (None if unset)."""
        t, kind = self.table, self.kind(name)
        if kind == "id":
            return lambda r: r.id
        if name == t.created_prop:
            return lambda r: r.created
        if name == t.updated_prop:
            return lambda r: r.updated
        convert = self.converter(kind, name)

        def get(r: Record) -> Any:
            v = r.props.get(name)
            return None if v is None else convert(v, True)

        return get

    @staticmethod
    def converter(kind: str, name: str) -> Callable[[str, bool], Any]:
        def convert(value: str, stored: bool) -> Any:
            if kind in ("id", "number"):
                try:
                    return float(value) if kind == "number" else int(value)
                except ValueError:
                    if stored:
                        return None
                    raise validation_error(f'"{value}" is not a valid number for {name}') from None
            if kind == "time":
                ms = parse_time(value)
                if ms is None and not stored:
                    raise validation_error(
                        f'"{value}" is not a valid date/epoch-millisecond value for {name}'
                    )
                return ms
            return value if kind == "enum" else value.lower()

        return convert

    # ----------------------------------------------------------------- filters

    def _compile(self, f: JSON) -> Predicate:
        name, op = f.get("propertyName"), f.get("operator", "EQ")
        if not name or op not in OPERATORS:
            raise validation_error(f"Invalid filter: {f}")
        raw = self._raw_getter(name)
        if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            want = op == "HAS_PROPERTY"
            return lambda r: (raw(r) is not None) == want
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            return self._token_filter(raw, str(f.get("value", "")), op == "CONTAINS_TOKEN")
        kind, get = self.kind(name), self.getter(name)
        convert = self.converter(kind, name)
        if op in ("IN", "NOT_IN"):
            values = f.get("values") or []
            wanted = {convert(str(v), False) if kind != "string" else str(v) for v in values}
            if op == "IN":
                return lambda r: get(r) in wanted
            return lambda r: get(r) not in wanted
        value = convert(str(f.get("value", "")), False)
        if op == "BETWEEN":
            high = convert(str(f.get("highValue", "")), False)
            return lambda r: (v := get(r)) is not None and value <= v <= high
        return _comparison(op, get, value)

    def _raw_getter(self, name: str) -> Callable[[Record], str | None]:
        self.kind(name)
        t = self.table
        return lambda r: t.value(r, name)

    @staticmethod
    def _token_filter(raw: Callable[[Record], str | None], pattern: str, want: bool) -> Predicate:
        pattern = pattern.lower()

        def match(r: Record) -> bool:
            v = raw(r)
            if v is None:
                return not want
            v = v.lower()
            tokens = {v, *_TOKEN_SPLIT.split(v), *_WORD_SPLIT.split(v)}
            hit = (
                any(fnmatch.fnmatchcase(t, pattern) for t in tokens) if "*" in pattern else pattern in tokens
            )
            return hit == want

        return match

    # ----------------------------------------------------------------- execution

    def run(self, offset: int, limit: int) -> tuple[int, list[Record]]:
        """(total, records[offset:offset+limit]) in the requested order."""
        fast = self._fast_id_order(offset, limit)
        if fast is not None:
            return fast
        matches = self._matches()
        self._sort(matches)
        return len(matches), matches[offset : offset + limit]

    def _id_bounds(self, filters: list[JSON], strict: bool = True) -> tuple[int, int] | None:
        """Id range [lo, hi) of a group's hs_object_id filters; None if ``strict`` and others."""
        lo, hi = 0, 1 << _ID_BITS
        for f in filters:
            if f.get("propertyName") != "hs_object_id" or f.get("operator") not in _RANGE_OPS:
                if strict:
                    return None
                continue
            op, v = f.get("operator"), int(f.get("value", 0))
            if op == "EQ":
                lo, hi = max(lo, v), min(hi, v + 1)
            elif op in ("GT", "GTE"):
                lo = max(lo, v + (op == "GT"))
            elif op in ("LT", "LTE"):
                hi = min(hi, v + (op == "LTE"))
            else:
                lo, hi = max(lo, v), min(hi, int(f.get("highValue", 0)) + 1)
        return lo, hi

    def _fast_id_order(self, offset: int, limit: int) -> tuple[int, list[Record]] | None:
        """Id-ordered search whose filters are only id ranges: no scan needed."""
        if self.query or len(self.raw_groups) > 1 or any(s[0] != "hs_object_id" or s[1] for s in self.sorts):
            return None
        bounds = self._id_bounds(self.raw_groups[0]) if self.raw_groups else (0, 1 << _ID_BITS)
        if bounds is None:
            return None
        t = self.table
        lo = bisect.bisect_left(t.ids, bounds[0])
        hi = bisect.bisect_left(t.ids, bounds[1])
        arch = t.archived_ids
        total = max(0, hi - lo) - (bisect.bisect_left(arch, bounds[1]) - bisect.bisect_left(arch, bounds[0]))
        out: list[Record] = []
        skipped = 0
        for pos in range(lo, hi):
            rec = t.records[t.ids[pos]]
            if rec.archived:
                continue
            if skipped < offset:
                skipped += 1
                continue
            if len(out) == limit:
                break
            out.append(rec)
        return total, out

    def _matches(self) -> list[Record]:
        if not self.groups:
            found = [self.table.records[i] for i in self.table.ids]
            return [r for r in found if not r.archived and self._query_ok(r)]
        seen: dict[int, Record] = {}
        for preds, filters in zip(self.groups, self.raw_groups, strict=True):
            for rec in self._candidates(filters):
                if (
                    rec.id not in seen
                    and not rec.archived
                    and all(p(rec) for p in preds)
                    and self._query_ok(rec)
                ):
                    seen[rec.id] = rec
        return list(seen.values())

    def _candidates(self, filters: list[JSON]) -> Iterable[Record]:
        """Records worth testing for one group, using the id range or last-modified index."""
        t = self.table
        id_range = self._id_bounds(filters, strict=False) or (0, 1 << _ID_BITS)
        lo, hi = bisect.bisect_left(t.ids, id_range[0]), bisect.bisect_left(t.ids, id_range[1])
        unique = self._unique_candidate(filters)
        if unique is not None:
            return unique
        mod = self._modified_range(filters)
        if mod is not None and t.modified.estimate(*mod) < hi - lo:
            return [t.records[k & _ID_MASK] for k in t.modified.range(*mod)]
        return (t.records[t.ids[p]] for p in range(lo, hi))

    def _unique_candidate(self, filters: list[JSON]) -> list[Record] | None:
        for f in filters:
            name = f.get("propertyName")
            if f.get("operator") == "EQ" and name in self.table.unique and name != "hs_object_id":
                holder = self.table.unique_owner(name, str(f.get("value", "")))
                return [] if holder is None else [self.table.records[holder]]
        return None

    def _modified_range(self, filters: list[JSON]) -> tuple[int, int] | None:
        lo, hi, used = 0, 1 << 62, False
        for f in filters:
            if f.get("propertyName") != self.table.updated_prop:
                continue
            op = f.get("operator")
            v = parse_time(str(f.get("value", "")))
            if v is None:
                continue
            if op in ("GT", "GTE", "EQ", "BETWEEN"):
                lo, used = max(lo, v + (op == "GT")), True
            if op in ("LT", "LTE", "EQ"):
                hi, used = min(hi, v + (op != "LT")), True
            if op == "BETWEEN":
                high = parse_time(str(f.get("highValue", "")))
                hi = min(hi, (high if high is not None else hi - 1) + 1)
        return (lo << _ID_BITS, hi << _ID_BITS) if used else None

    def _query_ok(self, rec: Record) -> bool:
        if not self.query:
            return True
        words = " ".join(rec.props.get(n, "") for n in _SEARCHABLE).lower()
        return all(part in words for part in self.query.split())

    def _parse_sort(self, sort: Any) -> tuple[str, bool]:
        if isinstance(sort, dict):
            name, desc = (
                sort.get("propertyName", ""),
                sort.get("direction", "ASCENDING") == "DESCENDING",
            )
        else:
            text = str(sort)
            if text.startswith("{"):
                return self._parse_sort(json.loads(text))
            name, desc = text.lstrip("-"), text.startswith("-")
        self.kind(name)
        return name, desc

    def _sort(self, records: list[Record]) -> None:
        records.sort(key=lambda r: r.id)
        for name, desc in reversed(self.sorts):
            get = self.getter(name)
            present = [r for r in records if get(r) is not None]
            absent = [r for r in records if get(r) is None]
            present.sort(key=get, reverse=desc)
            records[:] = present + absent


def _comparison(op: str, get: Callable[[Record], Any], value: Any) -> Predicate:
    if op == "EQ":
        return lambda r: get(r) == value
    if op == "NEQ":
        return lambda r: get(r) != value
    compare: dict[str, Callable[[Any], bool]] = {
        "LT": lambda v: v < value,
        "LTE": lambda v: v <= value,
        "GT": lambda v: v > value,
        "GTE": lambda v: v >= value,
    }
    test = compare[op]

    def check(r: Record) -> bool:
        v = get(r)
        try:
            return v is not None and test(v)
        except TypeError:
            return False

    return check
