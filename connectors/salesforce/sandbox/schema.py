"""sObject definitions for the Salesforce sandbox: fields, types, picklists, key prefixes.

Only the objects and fields crm-handoff touches. Standard fields follow Salesforce's
field reference; the ``__c`` fields are the custom fields a crm-handoff org installs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

STRING_TYPES = frozenset({"id", "string", "textarea", "email", "phone", "picklist", "reference"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})

#: Fields every sObject has; the store maintains them.
AUDIT_FIELDS = ("CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted")


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One field as describe() reports it."""

    name: str
    type: str
    length: int = 0
    label: str = ""
    picklist: tuple[str, ...] = ()
    default: object = None
    required: bool = False
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    custom: bool = False
    #: A restricted picklist refuses values it does not list; an unrestricted one takes any.
    restricted: bool = True
    picklist_labels: tuple[str, ...] = ()  # by position in ``picklist`` (default: the value)

    @property
    def nillable(self) -> bool:
        return not self.required and self.type != "boolean" and self.createable

    @property
    def relationship_name(self) -> str | None:
        """``OwnerId`` -> ``Owner``; ``Custom__c`` -> ``Custom__r``; None for non-references."""
        if self.type != "reference" or self.name == "Id":
            return None
        if self.name.endswith("__c"):
            return self.name[:-3] + "__r"
        return self.name[:-2] if self.name.endswith("Id") else None

    def describe(self) -> dict[str, object]:
        """The describe() entry for this field."""
        return {
            "name": self.name,
            "type": self.type,
            "length": self.length,
            "label": self.label or _label(self.name),
            "picklistValues": [
                {"value": v, "label": lab, "active": True, "defaultValue": v == self.default}
                for v, lab in zip(self.picklist, self.picklist_labels or self.picklist, strict=True)
            ],
            "restrictedPicklist": self.type == "picklist" and self.restricted,
            "externalId": self.external_id,
            "unique": self.unique,
            "createable": self.createable,
            "updateable": self.updateable,
            "nillable": self.nillable,
            "custom": self.custom,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "defaultValue": self.default if isinstance(self.default, str | bool) else None,
        }


@dataclass(slots=True)
class SObjectDef:
    """An sObject: its key prefix and ordered fields (position = slot in a stored row).

    ``hidden`` fields keep their slot (so row layouts never differ between stores) but
    are invisible: not described, queryable or writable (an org without the field).
    """

    name: str
    key_prefix: str
    fields: tuple[FieldDef, ...]
    hidden: frozenset[str] = frozenset()
    by_lower: dict[str, int] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)
    relationships: dict[str, FieldDef] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shown = [(i, f) for i, f in enumerate(self.fields) if f.name not in self.hidden]
        self.by_lower = {f.name.lower(): i for i, f in shown}
        self.by_name = {f.name: i for i, f in shown}
        self.relationships = {rel.lower(): f for _, f in shown if (rel := f.relationship_name) is not None}

    def without_custom_fields(self) -> SObjectDef:
        """This sObject as an org that has not installed crm-handoff's ``__c`` fields sees it."""
        return SObjectDef(
            self.name, self.key_prefix, self.fields, frozenset(f.name for f in self.fields if f.custom)
        )

    def with_field(self, fdef: FieldDef) -> SObjectDef:
        """A new definition with ``fdef`` added: a hidden slot of that name becomes visible
        (taking the new definition), otherwise the field gets a new last slot."""
        hidden = {h.lower(): h for h in self.hidden}
        slot = hidden.get(fdef.name.lower())
        if slot is None:
            return SObjectDef(self.name, self.key_prefix, (*self.fields, fdef), self.hidden)
        fields = tuple(replace(fdef, name=slot) if f.name == slot else f for f in self.fields)
        return SObjectDef(self.name, self.key_prefix, fields, self.hidden - {slot})

    def position(self, name: str) -> int | None:
        """Slot of a field (case-insensitive), or None if unknown."""
        pos = self.by_name.get(name)
        return self.by_lower.get(name.lower()) if pos is None else pos

    def field(self, name: str) -> FieldDef | None:
        pos = self.by_lower.get(name.lower())
        return None if pos is None else self.fields[pos]

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "label": self.name,
            "keyPrefix": self.key_prefix,
            "custom": False,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "replicateable": True,
            "fields": [f.describe() for f in self.fields if f.name not in self.hidden],
            "urls": {"sobject": f"/services/data/v62.0/sobjects/{self.name}"},
        }


def _label(name: str) -> str:
    base = name.removesuffix("__c").replace("_", " ")
    return base[:-2] + " ID" if base.endswith("Id") and len(base) > 2 else base


def _s(name: str, length: int = 255, **kw: object) -> FieldDef:
    return FieldDef(name, "string", length, **kw)  # type: ignore[arg-type]


def _ro(name: str, type_: str, **kw: object) -> FieldDef:
    """A read-only (system or derived) field."""
    return FieldDef(name, type_, createable=False, updateable=False, **kw)  # type: ignore[arg-type]


def _ref(name: str, *to: str, **kw: object) -> FieldDef:
    return FieldDef(name, "reference", 18, reference_to=to, **kw)  # type: ignore[arg-type]


def _pick(name: str, values: tuple[str, ...], default: str | None = None, **kw: object) -> FieldDef:
    return FieldDef(name, "picklist", 255, picklist=values, default=default, **kw)  # type: ignore[arg-type]


def _ext(name: str, length: int) -> FieldDef:
    return FieldDef(name, "string", length, external_id=True, unique=True, custom=True)


def _custom_handoff() -> tuple[FieldDef, ...]:
    return (
        FieldDef("Handoff_Status__c", "string", 255, custom=True),
        FieldDef("Handoff_Score__c", "double", 0, custom=True),
        FieldDef("Handoff_Reason__c", "textarea", 1000, custom=True),
        FieldDef("Handoff_Rep__c", "string", 255, custom=True),
    )


def _system() -> tuple[FieldDef, ...]:
    return (
        FieldDef("IsDeleted", "boolean", createable=False, updateable=False, default=False),
        _ro("CreatedDate", "datetime"),
        _ro("LastModifiedDate", "datetime"),
        _ro("SystemModstamp", "datetime"),
    )


def _id() -> FieldDef:
    return FieldDef("Id", "id", 18, createable=False, updateable=False)


LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Marketing Qualified",
    "Nurture",
    "Closed - Converted",
    "Closed - Not Converted",
)
CONVERTED_LEAD_STATUS = "Closed - Converted"
INDUSTRIES = (
    "Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications",
    "Construction", "Consulting", "Education", "Electronics", "Energy", "Engineering",
    "Entertainment", "Environmental", "Finance", "Food & Beverage", "Government", "Healthcare",
    "Hospitality", "Insurance", "Machinery", "Manufacturing", "Media", "Not For Profit",
    "Recreation", "Retail", "Shipping", "Technology", "Telecommunications", "Transportation",
    "Utilities", "Other",
)  # fmt: skip
LEAD_SOURCES = (
    "Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other", "Advertisement",
    "Employee Referral", "External Referral", "Partner", "Public Relations", "Seminar - Internal",
    "Seminar - Partner", "Trade Show", "Word of mouth", "Webinar", "Content", "Email", "Event",
    "HubSpot",
)  # fmt: skip
OPPORTUNITY_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
CLOSED_TASK_STATUSES = frozenset({"Completed"})
TASK_PRIORITIES = ("High", "Normal", "Low")
TASK_SUBTYPES = ("Task", "Email", "Call", "ListEmail", "Cadence", "LinkedIn")
TASK_TYPES = ("Call", "Email", "Meeting", "Other", "Send Letter/Quote")
CAMPAIGN_TYPES = (
    "Advertisement", "Banner Ads", "Conference", "Content", "Direct Mail", "Email", "Event",
    "Partners", "Public Relations", "Referral Program", "Seminar / Conference", "Telemarketing",
    "Trade Show", "Webinar", "Other",
)  # fmt: skip
CAMPAIGN_STATUSES = ("Planned", "In Progress", "Completed", "Aborted")
MEMBER_STATUSES = ("Sent", "Responded", "Attended", "Registered", "Downloaded", "Opened", "Clicked")
RESPONDED_MEMBER_STATUSES = frozenset({"Responded", "Attended", "Downloaded", "Clicked"})

_USER = SObjectDef(
    "User",
    "005",
    (
        _id(),
        FieldDef("Username", "string", 80, required=True, unique=True),
        FieldDef("Email", "email", 128, required=True),
        _s("FirstName", 40),
        FieldDef("LastName", "string", 80, required=True),
        _ro("Name", "string", length=121),
        FieldDef("IsActive", "boolean", default=True),
        FieldDef("TimeZoneSidKey", "string", 40, default="America/Los_Angeles"),
        *_system(),
    ),
)

_LEAD = SObjectDef(
    "Lead",
    "00Q",
    (
        _id(),
        _s("FirstName", 40),
        FieldDef("LastName", "string", 80, required=True),
        _ro("Name", "string", length=121),
        FieldDef("Email", "email", 80),
        _s("Title", 128),
        FieldDef("Company", "string", 255, required=True),
        _pick("Industry", INDUSTRIES),
        FieldDef("NumberOfEmployees", "int"),
        FieldDef("AnnualRevenue", "currency"),
        _s("Country", 80),
        FieldDef("Phone", "phone", 40),
        _pick("Status", LEAD_STATUSES, "Open - Not Contacted"),
        _pick("LeadSource", LEAD_SOURCES),
        _ref("OwnerId", "User"),
        FieldDef("IsConverted", "boolean", createable=False, updateable=False, default=False),
        _ro("ConvertedContactId", "reference", length=18, reference_to=("Contact",)),
        _ro("ConvertedAccountId", "reference", length=18, reference_to=("Account",)),
        _ro("ConvertedOpportunityId", "reference", length=18, reference_to=("Opportunity",)),
        _ro("ConvertedDate", "date"),
        _ext("HubSpot_Contact_Id__c", 32),
        *_custom_handoff(),
        *_system(),
    ),
)

_CONTACT = SObjectDef(
    "Contact",
    "003",
    (
        _id(),
        _ref("AccountId", "Account"),
        _s("FirstName", 40),
        FieldDef("LastName", "string", 80, required=True),
        _ro("Name", "string", length=121),
        FieldDef("Email", "email", 80),
        _s("Title", 128),
        _s("Department", 80),
        _s("MailingCountry", 80),
        FieldDef("Phone", "phone", 40),
        _pick("LeadSource", LEAD_SOURCES),
        _ref("OwnerId", "User"),
        _ext("HubSpot_Contact_Id__c", 32),
        *_custom_handoff(),
        *_system(),
    ),
)

_ACCOUNT = SObjectDef(
    "Account",
    "001",
    (
        _id(),
        FieldDef("Name", "string", 255, required=True),
        _pick("Industry", INDUSTRIES),
        FieldDef("NumberOfEmployees", "int"),
        _s("BillingCountry", 80),
        _ref("OwnerId", "User"),
        *_system(),
    ),
)

_OPPORTUNITY = SObjectDef(
    "Opportunity",
    "006",
    (
        _id(),
        FieldDef("Name", "string", 120, required=True),
        _ref("AccountId", "Account"),
        _pick("StageName", OPPORTUNITY_STAGES, required=True),
        FieldDef("CloseDate", "date", required=True),
        FieldDef("IsClosed", "boolean", createable=False, updateable=False, default=False),
        FieldDef("IsWon", "boolean", createable=False, updateable=False, default=False),
        FieldDef("Amount", "currency"),
        _pick("LeadSource", LEAD_SOURCES),
        _ref("OwnerId", "User"),
        _ref("ContactId", "Contact"),
        _ro("LastStageChangeDate", "datetime"),  # set when StageName changes (null until then)
        *_system(),
    ),
)

CONTACT_ROLES = (
    "Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker", "Evaluator",
    "Executive Sponsor", "Influencer", "Technical Buyer", "Other",
)  # fmt: skip

_OPPORTUNITY_CONTACT_ROLE = SObjectDef(
    "OpportunityContactRole",
    "00K",
    (
        _id(),
        _ref("OpportunityId", "Opportunity", required=True, updateable=False),
        _ref("ContactId", "Contact", required=True),
        _pick("Role", CONTACT_ROLES),
        FieldDef("IsPrimary", "boolean", default=False),
        *_system(),
    ),
)

_TASK = SObjectDef(
    "Task",
    "00T",
    (
        _id(),
        _s("Subject", 255),
        FieldDef("Description", "textarea", 32000),
        _ref("OwnerId", "User"),
        _ref("WhoId", "Lead", "Contact"),
        _ref("WhatId", "Account", "Opportunity", "Campaign"),
        FieldDef("ActivityDate", "date"),
        _pick("Status", TASK_STATUSES, "Not Started", required=True),
        _pick("Priority", TASK_PRIORITIES, "Normal", required=True),
        _pick("TaskSubtype", TASK_SUBTYPES, "Task", updateable=False),
        _pick("Type", TASK_TYPES),
        FieldDef("IsClosed", "boolean", createable=False, updateable=False, default=False),
        _ro("CompletedDateTime", "datetime"),
        _ext("Handoff_Key__c", 80),
        # the rep's outcome (``handoff install`` gives it the mapping's values, restricted)
        FieldDef("Handoff_Outcome__c", "picklist", 255, custom=True, restricted=False),
        *_system(),
    ),
)

_EVENT = SObjectDef(
    "Event",
    "00U",
    (
        _id(),
        _s("Subject", 255),
        _ref("WhoId", "Lead", "Contact"),
        _ref("WhatId", "Account", "Opportunity", "Campaign"),
        _ref("OwnerId", "User"),
        FieldDef("StartDateTime", "datetime"),
        FieldDef("EndDateTime", "datetime"),
        FieldDef("ActivityDateTime", "datetime"),
        FieldDef("DurationInMinutes", "int"),
        _s("Type", 40),
        FieldDef("Handoff_Outcome__c", "picklist", 255, custom=True, restricted=False),  # an Activity field
        *_system(),
    ),
)

_CAMPAIGN = SObjectDef(
    "Campaign",
    "701",
    (
        _id(),
        FieldDef("Name", "string", 80, required=True),
        _pick("Type", CAMPAIGN_TYPES),
        _pick("Status", CAMPAIGN_STATUSES, "Planned"),
        FieldDef("IsActive", "boolean", default=False),
        _ref("OwnerId", "User"),
        *_system(),
    ),
)

_CAMPAIGN_MEMBER = SObjectDef(
    "CampaignMember",
    "00v",
    (
        _id(),
        _ref("CampaignId", "Campaign", required=True, updateable=False),
        _ref("LeadId", "Lead", updateable=False),
        _ref("ContactId", "Contact", updateable=False),
        _pick("Status", MEMBER_STATUSES, "Sent"),
        FieldDef("HasResponded", "boolean", createable=False, updateable=False, default=False),
        _ro("FirstRespondedDate", "date"),
        *_system(),
    ),
)

SOBJECTS: dict[str, SObjectDef] = {
    d.name: d
    for d in (
        _USER,
        _LEAD,
        _CONTACT,
        _ACCOUNT,
        _OPPORTUNITY,
        _OPPORTUNITY_CONTACT_ROLE,
        _TASK,
        _EVENT,
        _CAMPAIGN,
        _CAMPAIGN_MEMBER,
    )
}
_BY_LOWER = {name.lower(): d for name, d in SOBJECTS.items()}
_BY_PREFIX = {d.key_prefix: d for d in SOBJECTS.values()}


def sobject(name: str) -> SObjectDef | None:
    """The definition of an sObject by (case-insensitive) API name."""
    return _BY_LOWER.get(name.lower())


def sobject_for_id(record_id: str) -> SObjectDef | None:
    """The sObject whose key prefix starts ``record_id``."""
    return _BY_PREFIX.get(record_id[:3])


def to_wire(value: Any) -> Any:
    """A stored value as Salesforce JSON: datetimes ``2026-11-20T10:15:30.000+0000``, dates ISO."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
        return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}+0000"
    if isinstance(value, date):
        return value.isoformat()
    return value


def parse_datetime(text: str) -> datetime:
    """Parse ``...Z``, ``+00:00``, ``+0000``, ``.000+0000`` or naive (UTC) ISO datetimes."""
    text = text.strip().replace(" ", "+") if "T" in text else text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
