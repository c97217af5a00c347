"""A value longer than its Salesforce field, through the real CLI: the Lead created for a
handoff stores it cut to the field's length, and the person is handed off once, to one rep."""

from __future__ import annotations

from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep, sync_json


def test_a_10000_character_first_name_is_handed_off_once_to_one_rep(crms, monkeypatch, tmp_path):
    reps = [rep("lee@northwind.example", "salesforce"), rep("kim@northwind.example", "salesforce")]
    cfg = mapping_dir(tmp_path, reps=reps)
    users = {add_rep_users(crms, r["email"])[1] for r in reps}
    cid = add_ready_contact(crms, 1, firstname="F" * 10_000)

    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0, first["errors"]
    assert first["errors"] == [] and first["people_created"]["salesforce"] == 1
    (lead,) = crms.salesforce().query("SELECT Id, FirstName, OwnerId, HubSpot_Contact_Id__c FROM Lead")[
        "records"
    ]
    assert lead["FirstName"] == "F" * 40  # Lead.FirstName holds 40 characters
    assert lead["HubSpot_Contact_Id__c"] == cid and lead["OwnerId"] in users
    (task,) = crms.sf_tasks()
    assert task["WhoId"] == lead["Id"] and task["OwnerId"] == lead["OwnerId"]
    assert len(task["Subject"]) <= 255

    for _ in range(2):  # later runs neither hand the person off again nor to someone else
        code, again = sync_json(crms, monkeypatch, cfg)
        assert code == 0, again["errors"]
        assert again["handed_off"] == 0 and again["errors"] == []
    assert [t["Id"] for t in crms.sf_tasks()] == [task["Id"]]
    assert len(crms.salesforce().query("SELECT Id FROM Lead")["records"]) == 1
