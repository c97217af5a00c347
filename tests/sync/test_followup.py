"""sync.followup's pure parts: handoff chains and when a first touch is due."""

from __future__ import annotations

from datetime import UTC, date, datetime

from mappings.availability import Availability, schedule
from sync.followup import chain_key, first_touch_due, next_key

OFFICE = {"working_hours": {"mon-fri": "09:00-17:00"}}


def test_reassignment_keys_chain_from_the_first_handoff():
    assert chain_key("abc#1") == ("abc#1", 0)
    assert next_key("abc#1") == "abc#1.r1" and next_key("abc#1.r1") == "abc#1.r2"
    assert chain_key("abc#2.r12") == ("abc#2", 12)


def test_the_sla_clock_runs_in_working_hours_only():
    office = schedule("UTC", Availability.model_validate(OFFICE), None)
    friday = datetime(2025, 6, 6, 16, 0, tzinfo=UTC)  # 1 hour left that day, then the weekend
    assert first_touch_due(office, friday, 8) == datetime(2025, 6, 9, 16, 0, tzinfo=UTC)


def test_a_holiday_stops_the_clock_out_of_office_does_not():
    friday = datetime(2025, 6, 6, 16, 0, tzinfo=UTC)
    holiday = schedule("UTC", Availability.model_validate(OFFICE | {"holidays": ["2025-06-09"]}), None)
    assert first_touch_due(holiday, friday, 8) == datetime(2025, 6, 10, 16, 0, tzinfo=UTC)
    away = Availability.model_validate(
        OFFICE | {"out_of_office": [{"from": "2025-06-09", "to": "2025-06-20"}]}
    )
    gone = schedule("UTC", away, None)
    assert date(2025, 6, 9) in gone.out_of_office[0]
    assert first_touch_due(gone, friday, 8) == datetime(2025, 6, 9, 16, 0, tzinfo=UTC)  # due while away


def test_a_short_working_week_pushes_the_due_time_to_the_next_working_hour():
    mondays = schedule("UTC", Availability.model_validate({"working_hours": {"mon": "09:00-10:00"}}), None)
    friday = datetime(2025, 6, 6, 16, 0, tzinfo=UTC)
    assert first_touch_due(mondays, friday, 1) == datetime(2025, 6, 9, 10, 0, tzinfo=UTC)
    assert first_touch_due(mondays, friday, 1.5) == datetime(2025, 6, 16, 9, 30, tzinfo=UTC)
