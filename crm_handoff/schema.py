"""What a CRM account has, as a connector reads it for the mapping check (``mappings.live``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CrmSchema:
    """What a CRM has: fields per object, picklist values per field, people by email."""

    crm: str
    fields: dict[str, set[str]] = field(default_factory=dict)  # object -> field names
    options: dict[str, set[str]] = field(default_factory=dict)  # "object.field" -> values
    active_people: set[str] = field(default_factory=set)  # emails of active owners/users
