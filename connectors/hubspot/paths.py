"""Every HubSpot API path choice, in one place.

hubspot-api-client 12 calls the semantic-versioned paths (``/crm/v3/...``,
``/crm/v4/...``) that HubSpot stops supporting in 2027. The transport sends every
request through ``route``: with ``HUBSPOT_API_VERSION`` set to a date version
(``2026-03``, ``2026-09``) each path moves to its date-versioned form, e.g.
``/crm/v3/objects/contacts`` -> ``/crm/objects/2026-03/contacts``. Moving the connector
to a new API version is a change of this table (and the setting), nowhere else.
"""

from __future__ import annotations

import re

LEGACY = "v3"
VERSION = re.compile(r"^(v3|\d{4}-\d{2})$")

#: legacy prefix -> date-versioned prefix ("{v}" is the version)
TABLE: tuple[tuple[str, str], ...] = (
    ("/crm/v3/objects/", "/crm/objects/{v}/"),
    ("/crm/v4/objects/", "/crm/objects/{v}/"),  # per-record association reads
    ("/crm/v3/properties/", "/crm/properties/{v}/"),
    ("/crm/v3/owners/", "/crm/owners/{v}/"),
    ("/crm/v4/associations/", "/crm/associations/{v}/"),
    ("/events/v3/events/", "/events/{v}/events/"),
)


def route(url: str, version: str) -> str:
    """The URL to call for ``url`` (as the SDK built it) at API ``version``."""
    if version == LEGACY:
        return url
    scheme, sep, rest = url.partition("://")
    host, _, path = rest.partition("/") if sep else ("", "/", url.lstrip("/"))
    path = "/" + path
    for legacy, dated in TABLE:
        if path.startswith(legacy):
            path = dated.format(v=version) + path[len(legacy) :]
            break
    return f"{scheme}{sep}{host}{path}" if sep else path


_DATED = re.compile(r"^/(crm/objects|crm/properties|crm/owners|crm/associations|events)/(\d{4}-\d{2})/")


def unroute(path: str) -> str:
    """The legacy path of a date-versioned one (the sandbox serves both)."""
    match = _DATED.match(path)
    if not match:
        return path
    area, rest = match.group(1), path[match.end() :]
    if area == "crm/objects":
        return ("/crm/v4/objects/" if "/associations" in rest else "/crm/v3/objects/") + rest
    if area == "crm/associations":
        return "/crm/v4/associations/" + rest
    if area == "events":
        return "/events/v3/" + rest
    return f"/{area.replace('crm/', 'crm/v3/')}/" + rest
