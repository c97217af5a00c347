"""crm_handoff_status is a dropdown marketers can filter and chart; older installs are moved to it."""

from __future__ import annotations

from connectors.hubspot.sandbox.store import property_def
from crm_handoff.records import HANDOFF_STATUSES
from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep, run_cli, sync_json


def _status_property(crms):
    return crms.hubspot().crm.properties.core_api.get_by_name("contacts", "crm_handoff_status")


def test_the_status_is_a_dropdown_of_every_value_a_cycle_writes(crms, monkeypatch, tmp_path):
    prop = _status_property(crms)
    assert prop.type == "enumeration" and prop.field_type == "select"
    assert [o.value for o in prop.options] == list(HANDOFF_STATUSES)

    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "hubspot", 20, 20)])
    add_rep_users(crms, "dana@northwind.example")
    for i in range(3):
        add_ready_contact(crms, i)
    code, summary = sync_json(crms, monkeypatch, cfg)  # the sandbox refuses a value not in the list
    assert code == 0, summary["errors"]
    statuses = [
        c.properties.get("crm_handoff_status")
        for c in crms.hubspot().crm.contacts.get_all(properties=["crm_handoff_status"])
    ]
    assert sorted(statuses) == ["handed off", "waiting: rep capacity", "waiting: rep capacity"]


def test_install_moves_an_older_free_text_status_to_the_dropdown(crms, monkeypatch):
    table = crms.hs_store.table("contacts")
    old = property_def("crm_handoff_status", "Handoff status", "crm_handoff", "string", "text")
    old["hubspotDefined"] = False
    table.properties["crm_handoff_status"] = old

    code, out, err = run_cli(crms, monkeypatch, "install")

    assert code == 0, err
    assert f"updated contacts.crm_handoff_status to a select of {len(HANDOFF_STATUSES)} values" in out
    assert _status_property(crms).type == "enumeration"
    code, again, _ = run_cli(crms, monkeypatch, "install")
    assert code == 0 and "contacts.crm_handoff_status already exists" in again


def test_people_waiting_in_salesforce_only_say_so_in_salesforce(crms, monkeypatch, tmp_path):
    from datetime import UTC, datetime, timedelta

    from tests.integration.conftest import add_lead

    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 20, 20)])
    add_rep_users(crms, "dana@northwind.example")
    at = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    leads = [add_lead(crms, i) for i in range(3)]
    for lead in leads:
        crms.sf_store.insert("Event", {"WhoId": lead, "Subject": "Discovery", "StartDateTime": at})

    code, summary = sync_json(crms, monkeypatch, cfg)

    assert code == 0, summary["errors"]
    rows = crms.salesforce().query_all("SELECT Handoff_Status__c, Handoff_Reason__c FROM Lead")["records"]
    assert sorted(r["Handoff_Status__c"] for r in rows) == [
        "handed off",
        "waiting: rep capacity",
        "waiting: rep capacity",
    ]
    waiting = [r for r in rows if r["Handoff_Status__c"] != "handed off"]
    assert all("every eligible rep is at weekly capacity" in r["Handoff_Reason__c"] for r in waiting)
