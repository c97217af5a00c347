"""A business-hours clock over one rep's ``Schedule`` (``mapping.reps.schedule_for(rep)``).

Pure functions: working hours are wall-clock times in the rep's time zone, so a day's
span is turned into real instants with ``zoneinfo`` (a 09:00-17:30 day is 8.5 hours
whatever the UTC offset; a 00:00-24:00 day on a DST change is 23 or 25 hours).
Holidays and out-of-office dates are local dates of the rep. Times given without a
time zone are read as UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mappings.availability import Schedule, Span

SEARCH_DAYS = 3660  # a deadline further than ten years of calendar days away is a configuration error
_HOUR = timedelta(hours=1)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _instant(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """The real instant of ``minute`` after local midnight of ``day`` (1440 is the next midnight)."""
    if minute >= 24 * 60:
        day, minute = day + timedelta(days=1), 0
    local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
    return local.astimezone(UTC)


def _intervals(rep: Schedule, first: date, last: date | None = None) -> Iterator[tuple[datetime, datetime]]:
    """The rep's working intervals (UTC), in order, on local dates ``first`` .. ``last``."""
    zone = ZoneInfo(rep.timezone)
    day = first
    while last is None or day <= last:
        spans: tuple[Span, ...] = rep.spans(day)
        for start, end in spans:
            yield _instant(day, start, zone), _instant(day, end, zone)
        day += timedelta(days=1)
        if last is None and (day - first).days > SEARCH_DAYS:
            return


def available(rep: Schedule, at: datetime) -> bool:
    """Whether ``at`` falls in the rep's working hours, not on a holiday nor out of office."""
    at = _aware(at)
    day = at.astimezone(ZoneInfo(rep.timezone)).date()
    return any(a <= at < b for a, b in _intervals(rep, day - timedelta(days=1), day))


def deadline(rep: Schedule, start: datetime, hours: float) -> datetime:
    """``start`` plus ``hours`` of the rep's working time (in ``start``'s time zone).

    Time outside working hours does not count: a start on a Saturday counts from Monday's
    first hour. A deadline that falls at the end of a working span is that end (Friday
    17:30, not Monday 09:00). ``hours`` 0 is ``start``. ValueError when the schedule has
    no working time within ten years.
    """
    if hours < 0:
        raise ValueError("hours must not be negative")
    start = _aware(start)
    left = timedelta(hours=hours)
    if not left:
        return start
    zone = ZoneInfo(rep.timezone)
    for a, b in _intervals(rep, start.astimezone(zone).date() - timedelta(days=1)):
        if b <= start:
            continue
        a = max(a, start)
        if left <= b - a:
            return (a + left).astimezone(start.tzinfo)
        left -= b - a
    raise ValueError(f"no {hours:g} working hours within {SEARCH_DAYS // 366} years of {start:%Y-%m-%d}")


def business_hours(rep: Schedule, start: datetime, end: datetime) -> float:
    """Hours of the rep's working time between ``start`` and ``end`` (0 when end is not after start)."""
    start, end = _aware(start), _aware(end)
    if end <= start:
        return 0.0
    zone = ZoneInfo(rep.timezone)
    first = start.astimezone(zone).date() - timedelta(days=1)
    total = timedelta()
    for a, b in _intervals(rep, first, end.astimezone(zone).date()):
        overlap = min(b, end) - max(a, start)
        if overlap > timedelta():
            total += overlap
    return total / _HOUR
