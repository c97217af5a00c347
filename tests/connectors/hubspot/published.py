"""The date-versioned paths HubSpot's published OpenAPI specs list, for the APIs crm-handoff uses.

Read (not copied) from HubSpot/HubSpot-public-api-spec-collection, snapshot 99893791383 (2026-08-21):
``PublicApiSpecs/CRM/{Objects,Contacts,Companies,Deals,Tasks,Meetings,Calls,Notes,Emails}/Rollouts/424/<v>/*.json``,
``CRM/Associations/Rollouts/130902``, ``CRM/Properties/Rollouts/145899``, ``CRM/Crm Owners/Rollouts/146888``,
``Events/Events/Rollouts/147897`` (and, for the 2026-09 per-record association read,
``CRM/Partner Services/Rollouts/424/2026-09``). Only method + path strings are kept here.
The per-object specs also list the same operations under literal names (``contacts``,
``companies``, ``0-3`` for deals at 2026-03); the generic ``{objectType}`` paths cover them.
"""

from __future__ import annotations

import re

_BOTH = """
GET /crm/objects/{v}/{objectType}
POST /crm/objects/{v}/{objectType}
GET /crm/objects/{v}/{objectType}/{objectId}
PATCH /crm/objects/{v}/{objectType}/{objectId}
DELETE /crm/objects/{v}/{objectType}/{objectId}
POST /crm/objects/{v}/{objectType}/search
POST /crm/objects/{v}/{objectType}/batch/read
POST /crm/objects/{v}/{objectType}/batch/create
POST /crm/objects/{v}/{objectType}/batch/update
POST /crm/objects/{v}/{objectType}/batch/upsert
POST /crm/objects/{v}/{objectType}/batch/archive
POST /crm/associations/{v}/{fromObjectType}/{toObjectType}/batch/read
POST /crm/associations/{v}/{fromObjectType}/{toObjectType}/batch/create
POST /crm/associations/{v}/{fromObjectType}/{toObjectType}/batch/archive
POST /crm/associations/{v}/{fromObjectType}/{toObjectType}/batch/associate/default
POST /crm/associations/{v}/{fromObjectType}/{toObjectType}/batch/labels/archive
POST /crm/associations/{v}/usage/high-usage-report/{userId}
GET /crm/objects/{v}/{objectType}/{objectId}/associations/{toObjectType}
PUT /crm/objects/{v}/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}
PUT /crm/objects/{v}/{objectType}/{objectId}/associations/{toObjectType}/{toObjectId}
DELETE /crm/objects/{v}/{objectType}/{objectId}/associations/{toObjectType}/{toObjectId}
GET /crm/properties/{v}/{objectType}
POST /crm/properties/{v}/{objectType}
POST /crm/properties/{v}/{objectType}/batch/read
POST /crm/properties/{v}/{objectType}/batch/create
POST /crm/properties/{v}/{objectType}/batch/archive
GET /crm/properties/{v}/{objectType}/groups
POST /crm/properties/{v}/{objectType}/groups
GET /crm/properties/{v}/{objectType}/groups/{groupName}
PATCH /crm/properties/{v}/{objectType}/groups/{groupName}
DELETE /crm/properties/{v}/{objectType}/groups/{groupName}
GET /crm/properties/{v}/{objectType}/{propertyName}
PATCH /crm/properties/{v}/{objectType}/{propertyName}
DELETE /crm/properties/{v}/{objectType}/{propertyName}
GET /crm/owners/{v}
GET /crm/owners/{v}/{ownerId}
GET /events/event-occurrences/{v}
GET /events/event-occurrences/{v}/event-types
"""
_ONLY = {
    "2026-03": """
POST /crm/objects/2026-03/contacts/merge
POST /crm/objects/2026-03/companies/merge
POST /crm/objects/2026-03/0-3/merge
POST /crm/objects/2026-03/contacts/gdpr-delete
""",
    "2026-09": """
POST /crm/objects/2026-09/{objectType}/merge
POST /crm/objects/2026-09/{objectType}/gdpr-delete
""",
}

#: version -> {(method, path template)} as the specs publish them
PUBLISHED: dict[str, frozenset[tuple[str, str]]] = {
    v: frozenset(
        (m, p)
        for m, p in (
            line.split(" ", 1) for line in (_BOTH.replace("{v}", v) + _ONLY[v]).splitlines() if line.strip()
        )
    )
    for v in _ONLY
}


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{\w+\}", template)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


_PATTERNS = {v: [(m, _pattern(t)) for m, t in ops] for v, ops in PUBLISHED.items()}


def is_published(method: str, path: str, version: str) -> bool:
    """True if the specs of ``version`` list ``method path`` (a concrete path, exact: no trailing slash)."""
    return any(m == method and p.match(path) for m, p in _PATTERNS.get(version, []))
