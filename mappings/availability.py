"""When a rep works: weekly working hours, out-of-office dates and holidays (``reps.yaml``).

A revops admin writes, at the top of ``reps.yaml`` (every rep) or on one rep (replacing
those keys for that rep)::

    availability:
      working_hours: {mon-fri: "09:00-17:30", fri: "09:00-13:00", wed: "08:00-12:00, 13:00-17:00"}
      out_of_office: [{from: 2025-08-04, to: 2025-08-15}, 2025-09-01]
      holidays: [2025-12-25, 2025-12-26]
      holidays_file: holidays/germany.ics

Times are wall-clock times in the rep's ``timezone``; a day not named is not a working
day; a single day's entry beats a range naming it. No ``working_hours`` means always
available (as before this section existed); holidays and out-of-office dates still apply.
"""

from __future__ import annotations

import itertools
import stat
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {
    **{d: i for i, d in enumerate(DAYS)},
    **{n: i for i, n in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday"))},
    "saturday": 5,
    "sunday": 6,
}
DAY_MINUTES = 24 * 60
MAX_ICS_BYTES = 1 << 20  # 1 MiB: years of holidays for many countries
HORIZON = (date(2000, 1, 1), date(2100, 1, 1))  # recurring holidays are expanded within these years
MAX_HOLIDAY_DATES = 20_000

Span = tuple[int, int]  # minutes after local midnight, [start, end), 0 <= start < end <= 1440
Week = tuple[tuple[Span, ...], ...]  # seven days, Monday first
_EXAMPLE = 'e.g. {mon-fri: "09:00-17:30"}'


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- working hours -----------------------------------------------------------


def parse_days(key: Any) -> tuple[int, ...]:
    """``mon``, ``monday``, ``mon-fri`` (``fri-mon`` wraps), ``sat, sun`` -> weekday numbers."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"expected weekdays (mon, tue... or a range like mon-fri), got {key!r}")
    days: list[int] = []
    for part in (p.strip().lower() for p in key.split(",")):
        ends = [e.strip() for e in part.split("-")]
        unknown = [e for e in ends if e not in _DAY_NAMES]
        if unknown or len(ends) > 2:
            bad = unknown[0] if unknown else part
            raise ValueError(
                f"unknown weekday {bad!r}; expected one of {', '.join(DAYS)} or a range like mon-fri"
            )
        first, last = _DAY_NAMES[ends[0]], _DAY_NAMES[ends[-1]]
        days += [(first + i) % 7 for i in range((last - first) % 7 + 1)]
    repeated = sorted({DAYS[d] for d in days if days.count(d) > 1})
    if repeated:
        raise ValueError(f"{repeated[0]} is named twice in {key!r}")
    return tuple(days)


def parse_time(text: str, *, end: bool = False) -> int:
    """``"09:00"`` or ``"9"`` -> minutes after midnight; ``"24:00"`` only as an end."""
    hours, _, minutes = text.strip().partition(":")
    if not (
        hours.isdigit() and len(hours) <= 2 and (not minutes or (minutes.isdigit() and len(minutes) == 2))
    ):
        raise ValueError(f"{text.strip()!r} is not a time; expected HH:MM, e.g. 09:00 or 17:30")
    value = int(hours) * 60 + int(minutes or 0)
    top = DAY_MINUTES if end else DAY_MINUTES - 1
    if int(minutes or 0) > 59 or value > top:
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00 to {'24:00' if end else '23:59'})")
    return value


def _span(text: str) -> Span:
    start, sep, end = text.replace("\u2013", "-").partition("-")
    if not sep:
        raise ValueError(f"{text.strip()!r}: expected a start and an end, e.g. 09:00-17:30")
    span = parse_time(start), parse_time(end, end=True)
    if span[1] <= span[0]:
        raise ValueError(
            f"{text.strip()!r}: the end is not after the start (a shift past midnight is two entries: "
            "22:00-24:00 on one day, 00:00-06:00 on the next)"
        )
    return span


def parse_hours(value: Any) -> tuple[Span, ...]:
    """``"09:00-12:00, 13:00-17:30"`` (or a list of such) -> sorted spans; ``off`` -> none."""
    if value is False or (isinstance(value, str) and value.strip().lower() in {"off", "closed", "none"}):
        return ()
    if isinstance(value, str):
        parts = [p for p in value.split(",") if p.strip()]
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        parts = [p for v in value for p in v.split(",") if p.strip()]
    else:
        raise ValueError(f'expected hours like "09:00-17:30" (quoted), or off; got {value!r}')
    if not parts:
        raise ValueError('expected hours like "09:00-17:30", or off')
    spans = sorted(_span(p) for p in parts)
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise ValueError(f"the hours {_fmt(spans)} overlap")
    return tuple(spans)


def _fmt(spans: list[Span]) -> str:
    def hhmm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    return ", ".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in spans)


def _entry_error(key: Any, message: str, value: Any) -> dict[str, Any]:
    """One error of a ``ValidationError`` located at the entry ``key``."""
    return {"type": "value_error", "loc": (str(key),), "input": value, "ctx": {"error": ValueError(message)}}


def _week(value: Any, handler: Any) -> Week:
    """The ``working_hours`` mapping -> a ``Week``; every bad entry reported at its own line."""
    if isinstance(value, tuple) and len(value) == 7:  # already a Week (model_copy, tests)
        return value
    if not isinstance(value, dict) or not value:
        raise ValueError(f"expected weekdays mapped to hours, {_EXAMPLE}")
    errors: list[Any] = []
    week: list[tuple[Span, ...] | None] = [None] * 7
    owner: dict[int, tuple[str, bool]] = {}  # day -> (the entry that set it, a single-day entry)
    for key, hours in value.items():
        try:
            days, spans = parse_days(key), parse_hours(hours)
        except ValueError as exc:
            errors.append(_entry_error(key, str(exc), hours))
            continue
        single = len(days) == 1
        for day in days:
            if day in owner and owner[day][1] == single:
                errors.append(_entry_error(key, f"{DAYS[day]} is already given by {owner[day][0]!r}", hours))
                break
            if day not in owner or single:
                week[day], owner[day] = spans, (str(key), single)
    if errors:
        raise ValidationError.from_exception_data("working_hours", errors)
    result = tuple(spans or () for spans in week)
    if not any(result):
        raise ValueError("no working time on any day (leave working_hours out for always available)")
    return result


# --- dates -------------------------------------------------------------------


class DateRange(_Frozen):
    """Whole days ``from`` .. ``to`` (inclusive), in the rep's time zone; a bare date is one day."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    first: date = Field(alias="from")
    last: date = Field(alias="to")

    @model_validator(mode="before")
    @classmethod
    def _one_day(cls, value: Any) -> Any:
        if isinstance(value, date | str) and not isinstance(value, datetime):
            return {"from": value, "to": value}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.last < self.first:
            raise ValueError(f"to ({self.last}) is before from ({self.first})")
        return self

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last


class HolidayFile(_Frozen):
    """An iCalendar file's all-day events, read when the mapping is loaded."""

    path: str
    dates: frozenset[date] = frozenset()


def _all_day(event: Any) -> list[date]:
    """The dates of one (occurrence of an) event; ValueError for an event with a time of day."""
    start, end = event.start, event.end
    if isinstance(start, datetime) or isinstance(end, datetime):
        midnight = all(isinstance(t, datetime) and t.time() == time(0) for t in (start, end))
        if not midnight:
            name = str(event.get("SUMMARY", "")) or "(no summary)"
            raise ValueError(
                f"event {name!r} on {start:%Y-%m-%d} has a time of day; a holiday calendar lists all-day events"
            )
        start, end = start.date(), end.date()
    return [start + timedelta(days=i) for i in range(max((end - start).days, 1))]


def _refuse_endless(calendar: Any) -> None:
    """ValueError for an event repeating daily (or more often) without COUNT or UNTIL."""
    for event in calendar.walk("VEVENT"):
        rules = event.get("RRULE")
        for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
            freq = str((rule.get("FREQ") or [""])[0]).upper()
            if freq in {"SECONDLY", "MINUTELY", "HOURLY", "DAILY"} and not (
                "COUNT" in rule or "UNTIL" in rule
            ):
                name = str(event.get("SUMMARY", "")) or "(no summary)"
                raise ValueError(f"event {name!r} repeats {freq.lower()} without an end (COUNT or UNTIL)")


def read_ics(path: Path) -> frozenset[date]:
    """The holiday dates of an iCalendar file (recurring events expanded); ValueError otherwise."""
    import icalendar
    import recurring_ical_events

    try:
        info = path.stat()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ICS_BYTES:
        raise ValueError(f"{path}: expected an iCalendar (.ics) file of at most {MAX_ICS_BYTES:,} bytes")
    try:
        calendar = icalendar.Calendar.from_ical(path.read_bytes())
        if calendar.name != "VCALENDAR":
            raise ValueError(f"the file holds a {calendar.name}, not a VCALENDAR")
        _refuse_endless(calendar)
        dates: set[date] = set()
        for event in recurring_ical_events.of(calendar).between(*HORIZON):
            if str(event.get("STATUS", "")).upper() != "CANCELLED":
                dates.update(_all_day(event))
    except ValueError as exc:
        raise ValueError(f"{path}: not a usable iCalendar file: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # icalendar/recurring_ical_events raise many kinds on broken input
        raise ValueError(f"{path}: not a usable iCalendar file: {type(exc).__name__}: {exc}") from None
    if len(dates) > MAX_HOLIDAY_DATES:
        raise ValueError(
            f"{path}: more than {MAX_HOLIDAY_DATES:,} holiday dates (a daily event over many years?)"
        )
    return frozenset(dates)


# --- the reps.yaml block -----------------------------------------------------


class Availability(_Frozen):
    """``availability:`` at the top of reps.yaml or on a rep; ``None`` keys are not given."""

    working_hours: Annotated[Week | None, WrapValidator(_week)] = None
    out_of_office: tuple[DateRange, ...] = ()
    holidays: tuple[date, ...] | None = None
    holidays_file: HolidayFile | None = None

    @field_validator("holidays_file", mode="before")
    @classmethod
    def _read(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or isinstance(value, HolidayFile):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected the path of an iCalendar (.ics) file, relative to the mapping files")
        base = (info.context or {}).get("config_dir") if isinstance(info.context, dict) else None
        path = Path(value).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return HolidayFile(path=value, dates=read_ics(path))


@dataclass(frozen=True)
class Schedule:
    """One rep's effective working time: what ``sync.calendar`` counts in."""

    timezone: str = "UTC"
    week: Week | None = None  # None: every hour of every day
    out_of_office: tuple[DateRange, ...] = ()
    holidays: frozenset[date] = frozenset()

    def day_off(self, day: date) -> bool:
        """A holiday or an out-of-office day."""
        return day in self.holidays or any(day in r for r in self.out_of_office)

    def spans(self, day: date) -> tuple[Span, ...]:
        """The working spans of a local date (none on a day off)."""
        if self.day_off(day):
            return ()
        if self.week is None:
            return ((0, DAY_MINUTES),)
        return self.week[day.weekday()]


def _holidays(block: Availability) -> frozenset[date]:
    listed = frozenset(block.holidays or ())
    return listed | (block.holidays_file.dates if block.holidays_file else frozenset())


def schedule(timezone: str, default: Availability, own: Availability | None) -> Schedule:
    """A rep's schedule: their own keys over the file-level ones (out-of-office dates add up)."""
    own = own or Availability()
    holidays_from = own if own.holidays is not None or own.holidays_file is not None else default
    return Schedule(
        timezone=timezone,
        week=own.working_hours if own.working_hours is not None else default.working_hours,
        out_of_office=default.out_of_office + own.out_of_office,
        holidays=_holidays(holidays_from),
    )
