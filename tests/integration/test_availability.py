"""An unavailable rep receives nothing (reps.yaml availability): out of office today, or
outside their working hours now; the others take the leads within their capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep, sync_json

AWAY = "away@northwind.example"
HERE = "here@northwind.example"


def _run(crms, monkeypatch, tmp_path, away_availability):
    extra = {"availability": away_availability, "timezone": "UTC"} if away_availability else {}
    reps = [rep(AWAY, "hubspot", **extra), rep(HERE, "hubspot")]
    for r in reps:
        add_rep_users(crms, r["email"])
    for i in range(4):
        add_ready_contact(crms, i)
    return sync_json(crms, monkeypatch, mapping_dir(tmp_path, reps=reps))


def test_a_rep_out_of_office_today_receives_nothing(crms, monkeypatch, tmp_path):
    today = datetime.now(UTC).date()
    ooo = {"out_of_office": [{"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}]}
    code, summary = _run(crms, monkeypatch, tmp_path, ooo)
    assert code == 0, summary["errors"]
    assert summary["handed_off_per_rep"] == {HERE: 4}
    assert summary["unavailable_reps"][AWAY].startswith("not available now")
    owners = {t.properties["hubspot_owner_id"] for t in crms.hs_tasks()}
    assert len(owners) == 1


def test_a_rep_outside_working_hours_now_receives_nothing(crms, monkeypatch, tmp_path):
    span = "13:00-14:00" if datetime.now(UTC).hour < 12 else "01:00-02:00"  # a span that excludes now
    code, summary = _run(crms, monkeypatch, tmp_path, {"working_hours": {"mon-sun": span}})
    assert code == 0, summary["errors"]
    assert summary["handed_off_per_rep"] == {HERE: 4}
    assert AWAY in summary["unavailable_reps"]


def test_without_availability_every_active_rep_receives(crms, monkeypatch, tmp_path):
    code, summary = _run(crms, monkeypatch, tmp_path, None)
    assert code == 0, summary["errors"]
    assert sum(summary["handed_off_per_rep"].values()) == 4 and len(summary["handed_off_per_rep"]) == 2
