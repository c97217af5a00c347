"""The business-hours clock: working hours in the rep's zone, weekends, holidays, out of office, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.availability import Availability, Schedule, schedule
from sync.calendar import available, business_hours, deadline

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def sched(tz: str = "Europe/Berlin", **block: Any) -> Schedule:
    return schedule(tz, Availability.model_validate(block), None)


OFFICE = {"working_hours": {"mon-fri": "09:00-17:30", "fri": "09:00-13:00"}}


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


# 2025-06-02 is a Monday


def test_available_in_working_hours_only():
    s = sched(**OFFICE)
    assert available(s, berlin(2025, 6, 2, 9, 0))
    assert available(s, berlin(2025, 6, 2, 17, 29))
    assert not available(s, berlin(2025, 6, 2, 8, 59))
    assert not available(s, berlin(2025, 6, 2, 17, 30))  # the end is not working time
    assert available(s, berlin(2025, 6, 6, 12, 59)) and not available(s, berlin(2025, 6, 6, 13, 0))  # Friday
    assert not available(s, berlin(2025, 6, 7, 11, 0))  # Saturday
    assert available(s, datetime(2025, 6, 2, 8, 0, tzinfo=UTC))  # 10:00 in Berlin (CEST)
    assert available(s, datetime(2025, 6, 2, 8, 0))  # naive: UTC


def test_holidays_and_out_of_office_are_not_available():
    s = sched(
        **OFFICE, holidays=[date(2025, 6, 9)], out_of_office=[{"from": "2025-06-11", "to": "2025-06-12"}]
    )
    assert not available(s, berlin(2025, 6, 9, 10, 0))
    assert available(s, berlin(2025, 6, 10, 10, 0))
    assert not available(s, berlin(2025, 6, 11, 10, 0)) and not available(s, berlin(2025, 6, 12, 16, 0))
    assert available(s, berlin(2025, 6, 13, 10, 0))


def test_no_working_hours_is_always_available_except_days_off():
    s = sched(holidays=["2025-12-25"])
    assert available(s, berlin(2025, 6, 7, 3, 0))  # a Saturday night
    assert not available(s, berlin(2025, 12, 25, 12, 0)) and available(s, berlin(2025, 12, 26, 0, 0))
    start = berlin(2025, 6, 7, 3, 0)
    assert deadline(sched(), start, 30) == start + timedelta(hours=30)


def test_a_start_outside_working_hours_counts_from_the_next_working_hour():
    s = sched(**OFFICE)
    assert deadline(s, berlin(2025, 6, 2, 7, 0), 1) == berlin(2025, 6, 2, 10, 0)  # before the day starts
    assert deadline(s, berlin(2025, 6, 2, 20, 0), 1) == berlin(2025, 6, 3, 10, 0)  # after it ends
    assert deadline(s, berlin(2025, 6, 7, 11, 0), 2) == berlin(2025, 6, 9, 11, 0)  # Saturday -> Monday


def test_a_deadline_across_the_weekend_and_at_the_end_of_a_day():
    s = sched(**OFFICE)
    assert deadline(s, berlin(2025, 6, 6, 12, 0), 3) == berlin(2025, 6, 9, 11, 0)  # Fri 1h + Mon 2h
    assert deadline(s, berlin(2025, 6, 2, 9, 0), 8.5) == berlin(2025, 6, 2, 17, 30)  # not Tuesday 09:00
    assert deadline(s, berlin(2025, 6, 2, 9, 0), 0) == berlin(2025, 6, 2, 9, 0)


def test_hours_spanning_several_days_skip_holidays_and_out_of_office():
    s = sched(**OFFICE)
    # Mon, Tue, Wed 8.5h each = 25.5; Thu 4.5 more -> 13:30
    assert deadline(s, berlin(2025, 6, 2, 9, 0), 30) == berlin(2025, 6, 5, 13, 30)
    off = sched(**OFFICE, holidays=["2025-06-03"], out_of_office=["2025-06-05"])
    # Mon 8.5, Wed 8.5, Fri 4 = 21, Mon 9 left -> Mon 8.5 + Tue 0.5
    assert deadline(off, berlin(2025, 6, 2, 9, 0), 30) == berlin(2025, 6, 10, 9, 30)
    assert business_hours(off, berlin(2025, 6, 2, 9, 0), berlin(2025, 6, 10, 9, 30)) == 30.0


def test_several_spans_a_day():
    s = sched(working_hours={"mon-fri": "08:00-12:00, 13:00-17:00"})
    assert not available(s, berlin(2025, 6, 2, 12, 30))
    assert deadline(s, berlin(2025, 6, 2, 11, 0), 2) == berlin(
        2025, 6, 2, 14, 0
    )  # the lunch break is skipped
    assert business_hours(s, berlin(2025, 6, 2, 0, 0), berlin(2025, 6, 3, 0, 0)) == 8.0


def test_the_deadline_is_in_the_start_time_zone():
    s = sched(**OFFICE)
    due = deadline(s, datetime(2025, 6, 2, 7, 0, tzinfo=UTC), 1)  # 09:00 Berlin + 1h
    assert due.tzinfo is UTC and due == datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


def test_business_hours_counts_only_working_time():
    s = sched(**OFFICE)
    assert business_hours(s, berlin(2025, 6, 6, 12, 0), berlin(2025, 6, 9, 11, 0)) == 3.0
    assert business_hours(s, berlin(2025, 6, 7, 0, 0), berlin(2025, 6, 9, 0, 0)) == 0.0  # the weekend
    assert business_hours(s, berlin(2025, 6, 9, 0, 0), berlin(2025, 6, 2, 0, 0)) == 0.0  # end before start
    assert business_hours(s, berlin(2025, 6, 2, 0, 0), berlin(2025, 6, 9, 0, 0)) == 4 * 8.5 + 4


# --- DST: Europe/Berlin springs forward 2025-03-30 and falls back 2025-10-26;
# America/New_York springs forward 2025-03-09 and falls back 2025-11-02 (all Sundays)


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("Europe/Berlin", date(2025, 3, 30), 23.0),
        ("Europe/Berlin", date(2025, 10, 26), 25.0),
        ("America/New_York", date(2025, 3, 9), 23.0),
        ("America/New_York", date(2025, 11, 2), 25.0),
    ],
)
def test_a_whole_day_on_a_dst_change_is_its_real_length(tz, day, hours):
    zone = ZoneInfo(tz)
    start, end = (
        datetime.combine(day, datetime.min.time(), zone),
        datetime.combine(day + timedelta(days=1), datetime.min.time(), zone),
    )
    assert business_hours(sched(tz), start, end) == hours  # always available
    assert business_hours(sched(tz, working_hours={"mon-sun": "00:00-24:00"}), start, end) == hours


def test_working_hours_keep_their_wall_clock_across_dst_in_berlin():
    s = sched(working_hours={"mon-fri": "09:00-17:30"})
    # Fri 2025-03-28 16:30 CET + 2h: 1h on Friday, 1h on Monday (now CEST)
    due = deadline(s, berlin(2025, 3, 28, 16, 30), 2)
    assert due == berlin(2025, 3, 31, 10, 0) and due.utcoffset() == timedelta(hours=2)
    assert due.astimezone(UTC) == datetime(2025, 3, 31, 8, 0, tzinfo=UTC)
    assert business_hours(s, berlin(2025, 3, 28, 0, 0), berlin(2025, 4, 1, 0, 0)) == 17.0
    autumn = deadline(s, berlin(2025, 10, 24, 17, 0), 1)  # Fri CEST -> Mon CET
    assert autumn == berlin(2025, 10, 27, 9, 30) and autumn.utcoffset() == timedelta(hours=1)


def test_working_hours_keep_their_wall_clock_across_dst_in_new_york():
    s = sched("America/New_York", working_hours={"mon-fri": "09:00-17:00"})
    start = datetime(2025, 10, 31, 16, 0, tzinfo=NEW_YORK)  # Fri EDT (UTC-4)
    due = deadline(s, start, 3)  # 1h Friday, 2h Monday in EST (UTC-5)
    assert due == datetime(2025, 11, 3, 11, 0, tzinfo=NEW_YORK)
    assert due.astimezone(UTC) == datetime(2025, 11, 3, 16, 0, tzinfo=UTC)
    spring = deadline(s, datetime(2025, 3, 7, 16, 0, tzinfo=NEW_YORK), 3)
    assert spring.astimezone(UTC) == datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # 11:00 EDT
    assert available(s, datetime(2025, 11, 3, 14, 30, tzinfo=UTC))  # 09:30 EST
    assert not available(s, datetime(2025, 10, 31, 12, 30, tzinfo=UTC))  # 08:30 EDT


def test_no_working_time_within_ten_years_is_an_error_not_a_hang():
    s = sched(**OFFICE, out_of_office=[{"from": "2025-01-01", "to": "2099-12-31"}])
    with pytest.raises(ValueError, match="no 1 working hours within 10 years"):
        deadline(s, berlin(2025, 6, 2, 9, 0), 1)
    with pytest.raises(ValueError, match="negative"):
        deadline(s, berlin(2025, 6, 2, 9, 0), -1)


ZONES = st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"])
STARTS = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(tz=ZONES, start=STARTS, hours=st.floats(min_value=0, max_value=200, allow_nan=False))
def test_business_hours_up_to_the_deadline_are_the_hours_asked(tz, start, hours):
    s = sched(
        tz,
        **OFFICE,
        holidays=["2025-12-25", "2026-01-01"],
        out_of_office=[{"from": "2025-08-04", "to": "2025-08-15"}],
    )
    due = deadline(s, start, hours)
    assert due >= start
    assert business_hours(s, start, due) == pytest.approx(hours, abs=1e-6)
    if timedelta(hours=hours):  # the last instant counted was working time (sub-microsecond hours are 0)
        assert available(s, due - min(timedelta(seconds=1), timedelta(hours=hours) / 2))
