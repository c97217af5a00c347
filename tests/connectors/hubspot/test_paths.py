"""paths.py against the paths HubSpot's published 2026-03 / 2026-09 specs list."""

from __future__ import annotations

import re

import pytest

from connectors.hubspot.paths import LEGACY, TABLE, VERSIONS, Endpoint, UnroutedPath, route
from tests.connectors.hubspot.published import PUBLISHED, is_published

SAMPLE = {
    "objectType": "contacts",
    "fromObjectType": "contacts",
    "toObjectType": "companies",
    "objectId": "101",
    "fromObjectId": "101",
    "toObjectId": "202",
    "propertyName": "email",
    "groupName": "contactinformation",
    "ownerId": "303",
}

#: (method, path as hubspot-api-client 12 builds it, path the specs publish) for every SDK
#: call crm-handoff makes (connector.py, live.py, install) and those its outcome/account work needs.
SDK_CALLS = [
    ("GET", "/crm/v3/owners/?limit=500&archived=false", "/crm/owners/{v}?limit=500&archived=false"),
    ("GET", "/crm/v3/owners/303", "/crm/owners/{v}/303"),
    ("GET", "/events/v3/events/?objectType=contact&eventType=e_submitted_form&limit=100",
     "/events/event-occurrences/{v}?objectType=contact&eventType=e_submitted_form&limit=100"),
    ("GET", "/events/v3/events/event-types", "/events/event-occurrences/{v}/event-types"),
    ("GET", "/crm/v3/objects/contacts?limit=100&archived=false", "/crm/objects/{v}/contacts?limit=100&archived=false"),
    ("POST", "/crm/v3/objects/contacts/search", "/crm/objects/{v}/contacts/search"),
    ("POST", "/crm/v3/objects/contacts/batch/update", "/crm/objects/{v}/contacts/batch/update"),
    ("POST", "/crm/v3/objects/contacts/batch/upsert", "/crm/objects/{v}/contacts/batch/upsert"),
    ("POST", "/crm/v3/objects/contacts/merge", "/crm/objects/{v}/contacts/merge"),
    ("POST", "/crm/v3/objects/tasks/search", "/crm/objects/{v}/tasks/search"),
    ("POST", "/crm/v3/objects/tasks/batch/create", "/crm/objects/{v}/tasks/batch/create"),
    ("POST", "/crm/v3/objects/meetings/batch/read", "/crm/objects/{v}/meetings/batch/read"),
    ("POST", "/crm/v4/associations/contacts/meetings/batch/read", "/crm/associations/{v}/contacts/meetings/batch/read"),
    ("GET", "/crm/v3/properties/contacts", "/crm/properties/{v}/contacts"),
    ("POST", "/crm/v3/properties/tasks", "/crm/properties/{v}/tasks"),
    ("GET", "/crm/v3/properties/contacts/lifecyclestage", "/crm/properties/{v}/contacts/lifecyclestage"),
    ("GET", "/crm/v3/properties/contacts/groups", "/crm/properties/{v}/contacts/groups"),
    ("POST", "/crm/v3/properties/contacts/groups", "/crm/properties/{v}/contacts/groups"),
    ("GET", "/crm/v3/objects/companies?limit=100", "/crm/objects/{v}/companies?limit=100"),
    ("POST", "/crm/v3/objects/companies/search", "/crm/objects/{v}/companies/search"),
    ("POST", "/crm/v3/objects/companies/batch/read", "/crm/objects/{v}/companies/batch/read"),
    ("GET", "/crm/v3/objects/deals?limit=100", "/crm/objects/{v}/deals?limit=100"),
    ("POST", "/crm/v3/objects/deals/search", "/crm/objects/{v}/deals/search"),
    ("POST", "/crm/v3/objects/deals/batch/read", "/crm/objects/{v}/deals/batch/read"),
    ("POST", "/crm/v4/associations/contacts/companies/batch/read", "/crm/associations/{v}/contacts/companies/batch/read"),
    ("POST", "/crm/v4/associations/deals/contacts/batch/read", "/crm/associations/{v}/deals/contacts/batch/read"),
    ("GET", "/crm/v4/objects/contacts/101/associations/companies?limit=500",
     "/crm/objects/{v}/contacts/101/associations/companies?limit=500"),
    ("PUT", "/crm/v4/objects/meetings/7/associations/default/contacts/101",
     "/crm/objects/{v}/meetings/7/associations/default/contacts/101"),
]  # fmt: skip


def _instance(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], template)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("entry", TABLE, ids=lambda e: f"{e.method} {e.legacy}")
def test_every_dated_path_in_the_table_is_one_the_specs_publish(entry: Endpoint, version: str) -> None:
    path = _instance(entry.dated.replace("{v}", version))
    assert is_published(entry.method, path, version), f"{entry.method} {path} is not in the {version} specs"
    assert route(_instance(entry.legacy), version) == path


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("method", "sdk", "published"), SDK_CALLS, ids=lambda x: str(x)[:60])
def test_each_sdk_call_goes_to_the_published_path(
    method: str, sdk: str, published: str, version: str
) -> None:
    expected = published.replace("{v}", version)
    assert route(f"https://api.hubapi.com{sdk}", version) == f"https://api.hubapi.com{expected}"
    assert route(sdk, version) == expected
    assert is_published(method, expected.split("?")[0], version)


def test_events_and_owners_are_not_derived_by_prefix() -> None:
    """The 2026-03 occurrences path is its own; owners take no trailing slash (issue items 2, 3)."""
    assert route("/events/v3/events/", "2026-03") == "/events/event-occurrences/2026-03"
    assert route("/crm/v3/owners/", "2026-03") == "/crm/owners/2026-03"
    assert not is_published("GET", "/events/2026-03/events", "2026-03")
    assert not is_published("GET", "/crm/owners/2026-03/", "2026-03")


def test_a_legacy_path_without_a_table_entry_is_refused_not_guessed() -> None:
    with pytest.raises(UnroutedPath, match="/crm/v3/objects/contacts/101/associations/companies"):
        route("/crm/v3/objects/contacts/101/associations/companies", "2026-03")
    with pytest.raises(UnroutedPath):
        route("https://api.hubapi.com/crm/v3/imports/", "2026-09")


def test_the_legacy_version_leaves_the_sdk_paths_alone() -> None:
    url = "https://api.hubapi.com/events/v3/events/?limit=100"
    assert route(url, LEGACY) == url


def test_the_published_table_covers_both_versions() -> None:
    assert set(PUBLISHED) == set(VERSIONS)
    for version in VERSIONS:
        assert ("GET", f"/events/event-occurrences/{version}") in PUBLISHED[version]
