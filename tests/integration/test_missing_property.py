"""What a person still needs to be sales-ready is on their HubSpot contact, for marketing's
nurture to aim at (crm_handoff_missing), and cleared once they are."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.integration.conftest import FIT, add_rep_users, mapping_dir, rep, sync_json


def test_the_nearest_definitions_gap_is_written_then_cleared(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "hubspot")])
    add_rep_users(crms, "dana@northwind.example")
    cid = crms.hs_store.add_contact({"email": "fit@acme.example", "lastname": "Fit", **FIT})
    code, first = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and first["handed_off"] == 0, first["errors"]
    missing = crms.hs_store.contacts()[0]["crm_handoff_missing"]
    assert missing and "more" in missing  # e.g. "Attended a webinar: 1 more webinar attended within ..."

    code, idle = sync_json(crms, monkeypatch, cfg)  # unchanged: not written again
    assert code == 0 and idle["people_updated"].get("hubspot", 0) == 0

    crms.hs_store.add_event("e_attended_webinar", cid, datetime.now(UTC), {"hs_title": "Webinar"})
    code, later = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and later["handed_off"] == 1, later["errors"]
    assert not crms.hs_store.contacts()[0].get("crm_handoff_missing")  # cleared
