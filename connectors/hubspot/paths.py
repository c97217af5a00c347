"""Every HubSpot API path choice, in one place.

hubspot-api-client 12 calls the semantic-versioned paths (``/crm/v3/...``,
``/crm/v4/...``, ``/events/v3/...``) that HubSpot stops supporting in 2027. The
transport sends every request through ``route``: with ``HUBSPOT_API_VERSION`` set to a
date version (``2026-03``, ``2026-09``) each path moves to the path HubSpot's published
spec for that version gives the same operation, e.g.
``/crm/v3/objects/contacts`` -> ``/crm/objects/2026-03/contacts``,
``/crm/v3/owners/`` -> ``/crm/owners/2026-03`` and
``/events/v3/events/`` -> ``/events/event-occurrences/2026-03``.

``TABLE`` is an exact, endpoint-by-endpoint transcription of the specs (nothing is
derived by prefix substitution); a legacy path with no entry is refused rather than
guessed. Moving the connector to a new API version is a change of this table (and
the setting), nowhere else. tests/connectors/hubspot/test_paths.py checks every entry
against the paths the specs publish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

LEGACY = "v3"
VERSION = re.compile(r"^(v3|\d{4}-\d{2})$")
#: Date versions HubSpot has published specs for (and the sandbox serves).
VERSIONS = ("2026-03", "2026-09")

_O, _P, _A = "/crm/v3/objects", "/crm/v3/properties", "/crm/v4/associations"
_R = "/crm/v4/objects/{objectType}/{objectId}/associations"


@dataclass(frozen=True)
class Endpoint:
    """One operation: its SDK (legacy) path and its date-versioned path (``{v}``: version)."""

    method: str
    legacy: str
    dated: str


def _ops(methods: str, legacy: str, dated: str) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(m, legacy, dated) for m in methods.split())


#: legacy (SDK) path -> date-versioned path, per operation, as the specs publish them.
TABLE: tuple[Endpoint, ...] = (
    # CRM objects (objects.json, contacts.json, companies.json, tasks.json, ...)
    *_ops("GET POST", f"{_O}/{{objectType}}", "/crm/objects/{v}/{objectType}"),
    *_ops("POST", f"{_O}/{{objectType}}/search", "/crm/objects/{v}/{objectType}/search"),
    *(
        Endpoint("POST", f"{_O}/{{objectType}}/batch/{op}", f"/crm/objects/{{v}}/{{objectType}}/batch/{op}")
        for op in ("read", "create", "update", "upsert", "archive")
    ),
    *_ops("POST", f"{_O}/{{objectType}}/merge", "/crm/objects/{v}/{objectType}/merge"),
    *_ops("POST", f"{_O}/contacts/gdpr-delete", "/crm/objects/{v}/contacts/gdpr-delete"),
    *_ops(
        "GET PATCH DELETE", f"{_O}/{{objectType}}/{{objectId}}", "/crm/objects/{v}/{objectType}/{objectId}"
    ),
    # Associations v4 (associations.json)
    *(
        Endpoint(
            "POST",
            f"{_A}/{{fromObjectType}}/{{toObjectType}}/batch/{op}",
            f"/crm/associations/{{v}}/{{fromObjectType}}/{{toObjectType}}/batch/{op}",
        )
        for op in ("read", "create", "archive", "associate/default", "labels/archive")
    ),
    *_ops(
        "GET",
        f"{_R}/{{toObjectType}}",
        "/crm/objects/{v}/{objectType}/{objectId}/associations/{toObjectType}",
    ),
    *_ops(
        "PUT",
        "/crm/v4/objects/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}",
        "/crm/objects/{v}/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}",
    ),
    *_ops(
        "PUT DELETE",
        f"{_R}/{{toObjectType}}/{{toObjectId}}",
        "/crm/objects/{v}/{objectType}/{objectId}/associations/{toObjectType}/{toObjectId}",
    ),
    # Properties (properties.json)
    *_ops("GET POST", f"{_P}/{{objectType}}", "/crm/properties/{v}/{objectType}"),
    *(
        Endpoint(
            "POST", f"{_P}/{{objectType}}/batch/{op}", f"/crm/properties/{{v}}/{{objectType}}/batch/{op}"
        )
        for op in ("read", "create", "archive")
    ),
    *_ops("GET POST", f"{_P}/{{objectType}}/groups", "/crm/properties/{v}/{objectType}/groups"),
    *_ops(
        "GET PATCH DELETE",
        f"{_P}/{{objectType}}/groups/{{groupName}}",
        "/crm/properties/{v}/{objectType}/groups/{groupName}",
    ),
    *_ops(
        "GET PATCH DELETE",
        f"{_P}/{{objectType}}/{{propertyName}}",
        "/crm/properties/{v}/{objectType}/{propertyName}",
    ),
    # Owners (crmOwners.json): no trailing slash, and the version last
    *_ops("GET", "/crm/v3/owners", "/crm/owners/{v}"),
    *_ops("GET", "/crm/v3/owners/{ownerId}", "/crm/owners/{v}/{ownerId}"),
    # Events (events.json): occurrences moved to /events/event-occurrences/{v}
    *_ops("GET", "/events/v3/events", "/events/event-occurrences/{v}"),
    *_ops("GET", "/events/v3/events/event-types", "/events/event-occurrences/{v}/event-types"),
)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _regex(template: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(template)
    out = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
    return re.compile(f"^{out}$")


@cache
def _compiled() -> tuple[tuple[re.Pattern[str], str], ...]:
    """Legacy templates (most literal segments first, one per path) -> dated template."""
    seen: dict[str, str] = {}
    for e in TABLE:
        seen.setdefault(e.legacy, e.dated)
    order = sorted(seen, key=lambda t: (-len(_PLACEHOLDER.sub("", t)), t))
    return tuple((_regex(t), seen[t]) for t in order)


class UnroutedPath(ValueError):
    """The SDK called a legacy path that has no date-versioned entry in ``TABLE``."""


def dated_path(path: str, version: str) -> str:
    """The date-versioned path for a legacy ``path`` (no query string)."""
    bare = path.rstrip("/") or "/"
    for pattern, dated in _compiled():
        match = pattern.match(bare)
        if match:
            return dated.format(v=version, **match.groupdict())
    raise UnroutedPath(f"no date-versioned HubSpot path for {path} (add it to connectors/hubspot/paths.py)")


def route(url: str, version: str) -> str:
    """The URL to call for ``url`` (as the SDK built it) at API ``version``."""
    if version == LEGACY:
        return url
    scheme, sep, rest = url.partition("://")
    host, _, path = rest.partition("/") if sep else ("", "/", url.lstrip("/"))
    path, q, query = ("/" + path).partition("?")
    path = dated_path(path, version) + q + query
    return f"{scheme}{sep}{host}{path}" if sep else path
