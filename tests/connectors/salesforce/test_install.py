"""``handoff install`` for Salesforce: custom fields created through the Metadata API (SOAP,
simple-salesforce's zeep client) against the TLS sandbox, through the real connector."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from simple_salesforce import format_external_id
from werkzeug.wrappers import Request, Response

from connectors.salesforce.auth import SalesforceAuthSettings
from connectors.salesforce.connector import (
    REQUIRED_FIELDS,
    SalesforceConnector,
    SalesforceSettings,
    install,
)
from connectors.salesforce.sandbox import Faults, SalesforceSandbox, SalesforceStore

ALL = [(obj, name) for obj, fields in REQUIRED_FIELDS.items() for name, _, _ in fields]
METADATA = "POST /services/Soap/m/62.0"


@pytest.fixture
def sandbox() -> Iterator[SalesforceSandbox]:
    box = SalesforceSandbox(SalesforceStore(custom_fields=False), faults=Faults())
    box.start()
    yield box
    box.stop()


def connector(box: SalesforceSandbox) -> SalesforceConnector:
    assert box.instance_url and box.ca_bundle
    auth = SalesforceAuthSettings(
        instance_url=box.instance_url, access_token=box.token, ca_bundle=box.ca_bundle
    )
    return SalesforceConnector(SalesforceSettings(auth=auth, max_wait=0.01))


def custom_fields(conn: SalesforceConnector, obj: str) -> dict[str, dict[str, object]]:
    return {f["name"]: f for f in getattr(conn.sf, obj).describe()["fields"] if f["custom"]}


def test_default_store_has_the_fields_and_install_creates_nothing() -> None:
    box = SalesforceSandbox(SalesforceStore())
    box.start()
    try:
        conn = connector(box)
        lines = install(conn)
        assert lines == [f"{obj}.{name} present" for obj, name in ALL]
        assert conn.calls[METADATA] == 0
    finally:
        box.stop()


def test_install_creates_missing_fields_then_reports_them_present(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    assert custom_fields(conn, "Task") == {}
    with pytest.raises(Exception, match="INVALID_FIELD"):
        conn.sf.query("SELECT Id, Handoff_Key__c FROM Task")

    lines = install(conn)
    assert len(lines) == len(ALL)
    for line, (obj, name) in zip(lines, ALL, strict=True):
        assert line.startswith(f"{obj}.{name} created; give the integration user read and edit access")
    assert conn.calls[METADATA] == len(ALL)  # metered: the connector's session carried them
    assert sandbox.calls["POST /services/Soap/m/{version}"] == len(ALL)

    task = custom_fields(conn, "Task")["Handoff_Key__c"]
    assert (task["type"], task["length"], task["externalId"], task["unique"]) == ("string", 80, True, True)
    lead = custom_fields(conn, "Lead")
    assert set(lead) == {name for obj, name in ALL if obj == "Lead"}
    assert lead["Handoff_Score__c"]["type"] == "double"
    assert (lead["Handoff_Reason__c"]["type"], lead["Handoff_Reason__c"]["length"]) == ("textarea", 1000)
    assert set(custom_fields(conn, "Contact")) == {name for obj, name in ALL if obj == "Contact"}

    # writes and SOQL see the new fields: an idempotent Task upsert on the external id
    path = format_external_id("Handoff_Key__c", "hs-1/lead#1")
    assert conn.sf.Task.upsert(path, {"Subject": "Call"}) == 201
    assert conn.sf.Task.upsert(path, {"Subject": "Call back"}) == 204
    rows = conn.sf.query("SELECT Subject, Handoff_Key__c FROM Task")["records"]
    assert [(r["Subject"], r["Handoff_Key__c"]) for r in rows] == [("Call back", "hs-1/lead#1")]
    lead_id = conn.sf.Lead.create({"LastName": "Ng", "Company": "Acme", "Handoff_Score__c": 72})["id"]
    assert conn.sf.Lead.get(lead_id)["Handoff_Score__c"] == 72

    again = install(conn)
    assert again == [f"{obj}.{name} present" for obj, name in ALL]
    assert conn.calls[METADATA] == len(ALL)  # nothing created the second time


def test_metadata_api_refused_prints_instructions_and_goes_on(sandbox: SalesforceSandbox) -> None:
    sandbox.metadata_api_allowed = False
    conn = connector(sandbox)
    lines = install(conn)
    kinds = {
        (obj, name): (kind, note) for obj, fields in REQUIRED_FIELDS.items() for name, kind, note in fields
    }
    assert lines == [
        f"MISSING {obj}.{name}: create it in Setup > Object Manager > {obj} > Fields as "
        f"{kinds[obj, name][0]}{', ' + kinds[obj, name][1] if kinds[obj, name][1] else ''}"
        for obj, name in ALL
    ]
    assert (
        "MISSING Task.Handoff_Key__c: create it in Setup > Object Manager > Task > Fields as Text(80), "
        in lines[0]
    )
    assert conn.calls[METADATA] == 1  # the first refusal says the user may not change metadata
    assert custom_fields(conn, "Lead") == {}


def test_a_field_created_but_invisible_is_reported_not_recreated(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real orgs hide Metadata-API fields until field-level security is granted: describe
    omits them and createMetadata answers DUPLICATE_DEVELOPER_NAME."""
    conn = connector(sandbox)
    lines = install(conn)
    assert all("created" in line for line in lines)
    describe = sandbox._describe

    def without_key(request: Request, sobject: str) -> Response:  # FLS not granted on Task's field
        doc = json.loads(describe(request, sobject).get_data())
        doc["fields"] = [f for f in doc["fields"] if f["name"] != "Handoff_Key__c"]
        return Response(json.dumps(doc), mimetype="application/json")

    monkeypatch.setattr(sandbox, "_describe", without_key)
    lines = install(conn)
    assert lines[0] == (
        "Task.Handoff_Key__c exists but is not visible to the integration user: "
        "Setup > Object Manager > Task > Fields & Relationships > Handoff_Key__c > Set Field-Level Security"
    )
    assert all(line.endswith(" present") for line in lines[1:])


def test_an_expired_session_gives_instructions(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    describe = sandbox._describe

    def then_expire(request: Request, sobject: str) -> Response:  # the next call, SOAP, is refused
        if sobject == "Task":
            sandbox.faults.expire_session_next = 1
        return describe(request, sobject)

    monkeypatch.setattr(sandbox, "_describe", then_expire)
    conn = connector(sandbox)
    lines = install(conn)
    assert lines[0].startswith("MISSING Task.Handoff_Key__c")  # an access token cannot be refreshed
    assert conn.calls[METADATA] == 1  # ... so install stops asking
    assert all(line.startswith("MISSING ") for line in lines)


def test_no_token_in_any_output_or_log(sandbox: SalesforceSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # zeep would log whole envelopes (SessionHeader) at DEBUG
    with structlog.testing.capture_logs() as events:
        conn = connector(sandbox)
        created = install(conn)
        sandbox.metadata_api_allowed = False
        sandbox.store._tables["Lead"].definition = sandbox.store.definition("Lead").without_custom_fields()
        refused = install(conn)
    assert any("created" in line for line in created) and any("MISSING" in line for line in refused)
    everything = "\n".join([*created, *refused, caplog.text, repr(events)])
    assert sandbox.token not in everything
    assert "salesforce_field_not_created" in repr(events)
