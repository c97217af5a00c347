"""``handoff install`` through the real CLI against both sandboxes: crm-handoff's HubSpot
property group and properties and its Salesforce custom fields are created where missing,
a second run creates nothing, and each line says what was done."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import requests

from connectors.hubspot.connector import GROUP, INSTALL_PROPERTIES
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from connectors.salesforce.connector import REQUIRED_FIELDS
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from mappings.loader import default_dir, load_mappings
from sync.cli import main

HS_PROPS = [(obj, name) for obj, props in INSTALL_PROPERTIES.items() for name, *_ in props]
SF_FIELDS = [(obj, name) for obj, fields in REQUIRED_FIELDS.items() for name, _, _ in fields]


@pytest.fixture
def crms(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[HubSpotSandbox, SalesforceSandbox]]:
    hs, sf = HubSpotSandbox(HubSpotStore()), SalesforceSandbox(SalesforceStore(custom_fields=False))
    hs.start()
    sf.start()
    env = {
        "HUBSPOT_BASE_URL": hs.base_url,
        "HUBSPOT_ACCESS_TOKEN": hs.token,
        "SALESFORCE_INSTANCE_URL": sf.instance_url,
        "SALESFORCE_ACCESS_TOKEN": sf.token,
        "SALESFORCE_CA_BUNDLE": sf.ca_bundle,
        "HANDOFF_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    yield hs, sf
    hs.stop()
    sf.stop()


def install(*extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["install", *extra])
    return code, out.getvalue(), err.getvalue()


def hs_properties(box: HubSpotSandbox, obj: str) -> set[str]:
    resp = requests.get(
        f"{box.base_url}/crm/v3/properties/{obj}", headers={"Authorization": f"Bearer {box.token}"}, timeout=5
    )
    return {p["name"] for p in resp.json()["results"] if p.get("groupName") == GROUP}


def sf_fields(box: SalesforceSandbox, obj: str) -> set[str]:
    resp = requests.get(
        f"{box.instance_url}/services/data/v62.0/sobjects/{obj}/describe",
        headers={"Authorization": f"Bearer {box.token}"},
        verify=box.ca_bundle,
        timeout=5,
    )
    return {f["name"] for f in resp.json()["fields"] if f["custom"]}


def test_install_creates_everything_once_and_says_so(crms: tuple[HubSpotSandbox, SalesforceSandbox]) -> None:
    hs, sf = crms
    assert not any(name in sf_fields(sf, obj) for obj, name in SF_FIELDS)
    assert not any(name in hs_properties(hs, obj) for obj, name in HS_PROPS)
    code, out, err = install()
    assert code == 0, err
    lines = out.splitlines()
    for obj in INSTALL_PROPERTIES:
        assert f"hubspot: created property group {GROUP} on {obj}" in lines
    for obj, name in HS_PROPS:
        assert f"hubspot: created {obj}.{name}" in lines
        assert name in hs_properties(hs, obj)
    for obj, name in SF_FIELDS:
        assert any(line.startswith(f"salesforce: {obj}.{name} created; ") for line in lines), out
        assert name in sf_fields(sf, obj)
    # the outcome picklist on tasks, with the shipped handoff.yaml's outcome choices
    choices = load_mappings(default_dir()).handoff.outcomes.choices
    assert f"hubspot: created tasks.crm_handoff_outcome with {len(choices)} values" in lines
    assert any(
        line.startswith(f"salesforce: Task.Handoff_Outcome__c created with {len(choices)} values")
        for line in lines
    )
    assert len(lines) == len(INSTALL_PROPERTIES) + len(HS_PROPS) + len(SF_FIELDS) + 2
    assert "Traceback" not in err and hs.token not in out + err and sf.token not in out + err

    calls_before = dict(sf.calls)
    code, out, err = install()
    assert code == 0, err
    lines = out.splitlines()
    assert not [line for line in lines if "created" in line]  # the second run creates nothing
    assert sorted(lines) == sorted(
        [f"hubspot: {obj}.{name} already exists" for obj, name in HS_PROPS]
        + [f"salesforce: {obj}.{name} present" for obj, name in SF_FIELDS]
        + ["hubspot: tasks.crm_handoff_outcome already exists", "salesforce: Task.Handoff_Outcome__c present"]
    )
    assert (
        sf.calls["POST /services/Soap/m/{version}"] == calls_before["POST /services/Soap/m/{version}"]
    )  # no create


def test_install_json_reports_per_crm(crms: tuple[HubSpotSandbox, SalesforceSandbox]) -> None:
    code, out, err = install("--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"hubspot", "salesforce"}
    assert "created contacts.crm_handoff_status" in report["hubspot"]
    assert len(report["salesforce"]) == len(SF_FIELDS) + 1  # and the outcome picklist
