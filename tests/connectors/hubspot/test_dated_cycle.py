"""Whole sync cycles with HUBSPOT_API_VERSION set to a date version, against the sandbox.

Every request the connector sends is recorded; each one must be a path the published
specs of that version list, exactly (so a derived or trailing-slash path fails here,
not in production).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.objects.meetings import (
    AssociationSpec,
    PublicAssociationsForObject,
    PublicObjectId,
    SimplePublicObjectInputForCreate,
)

from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings, install
from connectors.hubspot.paths import VERSIONS
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from connectors.sandbox_server import RunningServer, serve
from sync.cli import main
from tests.connectors.hubspot.published import is_published
from tests.integration.conftest import mapping_dir, rep

FIT = {
    "jobtitle": "VP Sales",
    "company": "Acme",
    "industry": "COMPUTER_SOFTWARE",
    "numemployees": "300",
    "country": "United States",
    "lifecyclestage": "marketingqualifiedlead",
}
UNVERSIONED = ("/email/public/v1/events",)  # legacy v1 email events: no date-versioned API exists


class Recorder:
    """The sandbox behind a WSGI wrapper that notes every request's method and path."""

    def __init__(self, box: HubSpotSandbox) -> None:
        self.box = box
        self.seen: list[tuple[str, str, int]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]

        def record(status: str, headers: Any, *rest: Any) -> Any:
            self.seen.append((method, path, int(status.split()[0])))
            return start_response(status, headers, *rest)

        return self.box(environ, record)


@pytest.fixture
def portal() -> Iterator[tuple[HubSpotSandbox, HubSpotStore, Recorder, RunningServer]]:
    store = HubSpotStore()
    box = HubSpotSandbox(store)
    box.start()
    install(HubSpotConnector(HubSpotSettings.with_token(box.base_url, box.token)))
    recorder = Recorder(box)
    server = serve(recorder)
    yield box, store, recorder, server
    server.stop()
    box.stop()


def sync(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], cfg: Path) -> dict[str, Any]:
    for key in ("SALESFORCE_INSTANCE_URL", "SALESFORCE_ACCESS_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["sync", "--once", "--json", "--config", str(cfg)])
    assert out.getvalue().strip(), err.getvalue()
    summary = dict(json.loads(out.getvalue()))
    assert code == 0, summary
    return summary


def log_meeting(box: HubSpotSandbox, contact_id: str, at: datetime) -> None:
    """A meeting logged through the API (the SDK's v3 path), as a rep's calendar tool would."""
    client = HubSpot(access_token=box.token, host=box.base_url)
    client.crm.objects.meetings.basic_api.create(
        SimplePublicObjectInputForCreate(
            properties={"hs_timestamp": at.isoformat(), "hs_meeting_title": "Discovery call"},
            associations=[
                PublicAssociationsForObject(
                    to=PublicObjectId(id=contact_id),
                    types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=200)],
                )
            ],
        )
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_a_dated_version_cycle_calls_only_published_paths(
    portal: tuple[HubSpotSandbox, HubSpotStore, Recorder, RunningServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    version: str,
) -> None:
    box, store, recorder, server = portal
    now = datetime.now(UTC)
    cfg = mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")])
    store.add_owner("sam@northwind.example", "Sam", "Okafor")
    formed = store.add_contact({"email": "form@acme.example", "lastname": "Form", **FIT})
    store.add_event("e_submitted_form", formed, now - timedelta(days=1), {"hs_title": "Request a demo"})
    met = store.add_contact({"email": "met@acme.example", "lastname": "Met", **FIT})
    log_meeting(box, met, now - timedelta(hours=2))
    store.add_email_event(
        "met@acme.example", "CLICK", now - timedelta(days=1), "https://acme.example/pricing"
    )
    env = {
        "HUBSPOT_BASE_URL": server.url,
        "HUBSPOT_ACCESS_TOKEN": box.token,
        "HUBSPOT_API_VERSION": version,
        "HANDOFF_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "HANDOFF_LOOKBACK_SECONDS": "0",
    }
    recorder.seen.clear()

    first = sync(monkeypatch, env, cfg)
    # the meeting was seen: the contact's last-activity date moved when it was logged
    assert first["tasks_created"]["hubspot"] == 2, first
    store.update_contact(formed, {"firstname": "Changed"})
    second = sync(monkeypatch, {**env, "HANDOFF_LOOKBACK_SECONDS": "86400"}, cfg)  # + the daily archived scan
    assert second["tasks_created"]["hubspot"] == 0, second

    calls = [(m, p, s) for m, p, s in recorder.seen if p not in UNVERSIONED]
    wrong = sorted({f"{m} {p}" for m, p, _ in calls if not is_published(m, p, version)})
    assert not wrong, f"paths not in the {version} specs: {wrong}"
    assert all(s < 400 for _, _, s in calls), [c for c in calls if c[2] >= 400]
    paths = {p.replace(version, "{v}") for _, p, _ in calls}
    assert {
        "/crm/owners/{v}",
        "/events/event-occurrences/{v}",
        "/crm/objects/{v}/contacts",
        "/crm/objects/{v}/contacts/search",
        "/crm/associations/{v}/contacts/meetings/batch/read",
        "/crm/objects/{v}/meetings/batch/read",
        "/crm/objects/{v}/tasks/batch/create",
        "/crm/objects/{v}/contacts/batch/update",
    } <= paths, sorted(paths)
