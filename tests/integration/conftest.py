"""Integration fixtures: both sandboxes on loopback, scenario builders, the real CLI."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from hubspot import HubSpot
from simple_salesforce import Salesforce

from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings, install
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from mappings.loader import default_dir
from sync.cli import main

pytestmark = pytest.mark.integration


@dataclass
class Crms:
    """Both sandboxes, their stores, and SDK clients that read them back."""

    hs: HubSpotSandbox
    sf: SalesforceSandbox
    hs_store: HubSpotStore
    sf_store: SalesforceStore
    env: dict[str, str] = field(default_factory=dict)

    def hubspot(self) -> HubSpot:
        return HubSpot(access_token=self.hs.token, host=self.hs.base_url)

    def salesforce(self) -> Salesforce:
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify
        s.verify = self.sf.ca_bundle
        return Salesforce(
            instance_url=self.sf.instance_url, session_id=self.sf.token, version="62.0", session=s
        )

    def sf_tasks(self) -> list[dict[str, Any]]:
        soql = "SELECT Id, OwnerId, WhoId, Subject, Description, Handoff_Key__c, Status FROM Task"
        return [r for r in self.salesforce().query_all(soql)["records"] if r.get("Handoff_Key__c")]

    def hs_tasks(self) -> list[Any]:
        api = self.hubspot().crm.objects.tasks.basic_api
        props = ["hs_task_subject", "hs_task_body", "hubspot_owner_id", "crm_handoff_key"]
        out, after = [], None
        while True:
            page = api.get_page(limit=100, after=after, properties=props)
            out += page.results
            if not (page.paging and page.paging.next):
                return out
            after = page.paging.next.after


@pytest.fixture
def crms(state_url: str) -> Iterator[Crms]:
    hs_store, sf_store = HubSpotStore(), SalesforceStore()
    hs, sf = HubSpotSandbox(hs_store), SalesforceSandbox(sf_store)
    hs.start()
    sf.start()
    install(HubSpotConnector(HubSpotSettings.with_token(hs.base_url, hs.token)))
    env = {
        "HUBSPOT_BASE_URL": hs.base_url,
        "HUBSPOT_ACCESS_TOKEN": hs.token,
        "SALESFORCE_INSTANCE_URL": sf.instance_url,
        "SALESFORCE_ACCESS_TOKEN": sf.token,
        "SALESFORCE_CA_BUNDLE": sf.ca_bundle,
        "SALESFORCE_WINDOW_LAG_SECONDS": "0",  # scenarios change records and sync within a second
        "HANDOFF_STATE_URL": state_url,
    }
    yield Crms(hs, sf, hs_store, sf_store, env)
    hs.stop()
    sf.stop()


def mapping_dir(tmp_path: Path, reps: list[dict[str, Any]] | None = None, **edits: Any) -> Path:
    """A copy of the shipped mappings with reps and top-level keys replaced."""
    target = tmp_path / "mappings"
    if not target.exists():
        shutil.copytree(default_dir(), target)
    if reps is not None:
        (target / "reps.yaml").write_text(yaml.safe_dump({"version": 1, "reps": reps}))
    for name, changes in edits.items():
        path = target / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        data.update(changes)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def rep(
    email: str, works_in: str = "salesforce", minutes: int = 120, per_lead: int = 20, **kw: Any
) -> dict[str, Any]:
    return {
        "name": email.split("@")[0].title(),
        "email": email,
        "works_in": works_in,
        "weekly_followup_minutes": minutes,
        "minutes_per_lead": per_lead,
        **kw,
    }


def add_rep_users(crms: Crms, email: str) -> tuple[str, str]:
    """The rep as a HubSpot owner and an active Salesforce user: (owner id, user id)."""
    owner = crms.hs_store.add_owner(email, email.split("@")[0].title(), "Rep")
    user = crms.sf_store.insert(
        "User",
        {
            "Username": email,
            "Email": email,
            "FirstName": "Rep",
            "LastName": email.split("@")[0].title(),
            "IsActive": True,
        },
    )
    return owner, user


FIT = {
    "jobtitle": "VP Marketing",
    "company": "Acme",
    "industry": "COMPUTER_SOFTWARE",
    "numemployees": "250",
    "country": "United States",
    "lifecyclestage": "marketingqualifiedlead",
}


def add_ready_contact(
    crms: Crms, i: int, extra_events: int = 0, now: datetime | None = None, **props: str
) -> str:
    """A sales-ready HubSpot contact: senior fit (45) + a demo request (20) + extras."""
    now = now or datetime.now(UTC)
    cid = crms.hs_store.add_contact(
        {"email": f"lead{i}@acme{i}.example", "firstname": f"Lee{i}", "lastname": f"Buyer{i}", **FIT, **props}
    )
    crms.hs_store.add_event("e_submitted_form", cid, now - timedelta(days=1), {"hs_title": "Request a demo"})
    for k in range(extra_events):  # each pair of downloads adds 15, a webinar 20
        if k == 0:
            crms.hs_store.add_event(
                "e_attended_webinar", cid, now - timedelta(days=2), {"hs_title": "Webinar"}
            )
        else:
            for _ in range(2):
                crms.hs_store.add_event(
                    "e_downloaded_content", cid, now - timedelta(days=2), {"hs_title": "Pricing guide"}
                )
    return cid


def add_lead(crms: Crms, i: int, owner: str | None = None, **fields: Any) -> str:
    values = {
        "FirstName": f"Lee{i}",
        "LastName": f"Buyer{i}",
        "Email": f"lead{i}@acme{i}.example",
        "Company": "Acme",
        "Title": "VP Marketing",
        "Industry": "Technology",
        "NumberOfEmployees": 250,
        "Country": "United States",
        "Status": "Marketing Qualified",
        **fields,
    }
    if owner:
        values["OwnerId"] = owner
    return crms.sf_store.insert("Lead", values)


def run_cli(crms: Crms, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str, str]:
    """Run ``handoff`` in-process with the sandboxes' settings; (exit code, stdout, stderr)."""
    for key, value in crms.env.items():
        monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def sync_json(
    crms: Crms, monkeypatch: pytest.MonkeyPatch, config: Path, *extra: str
) -> tuple[int, dict[str, Any]]:
    code, out, err = run_cli(crms, monkeypatch, "sync", "--once", "--json", "--config", str(config), *extra)
    assert out.strip(), err
    return code, json.loads(out)
