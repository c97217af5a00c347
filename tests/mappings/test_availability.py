"""reps.yaml ``availability``: absent means always available; every mistake one line with its line."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from mappings.loader import default_dir, load_mappings
from sync.calendar import available
from sync.cli import main

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//crm-handoff tests//EN
BEGIN:VEVENT
UID:christmas@test
DTSTAMP:20240101T000000Z
DTSTART;VALUE=DATE:20241225
DTEND;VALUE=DATE:20241227
RRULE:FREQ=YEARLY
SUMMARY:Christmas
END:VEVENT
BEGIN:VEVENT
UID:unity@test
DTSTAMP:20240101T000000Z
DTSTART;VALUE=DATE:20251003
SUMMARY:German Unity Day
END:VEVENT
BEGIN:VEVENT
UID:may@test
DTSTAMP:20240101T000000Z
DTSTART;TZID=Europe/Berlin:20250501T000000
DTEND;TZID=Europe/Berlin:20250502T000000
SUMMARY:Labour Day (an all-day event as some calendars export it)
END:VEVENT
BEGIN:VEVENT
UID:cancelled@test
DTSTAMP:20240101T000000Z
DTSTART;VALUE=DATE:20250601
STATUS:CANCELLED
SUMMARY:Not a holiday after all
END:VEVENT
END:VCALENDAR
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_dir(), target)
    return target


def write_reps(cfg: Path, top: str = "", dana: str = "") -> Path:
    """The shipped reps.yaml with ``top`` appended and ``dana`` added to the first rep's keys."""
    path = cfg / "reps.yaml"
    text = path.read_text()
    if dana:
        text = text.replace("timezone: America/Chicago}", f"timezone: America/Chicago, {dana}}}", 1)
    path.write_text(text + top)
    return path


def test_todays_reps_are_always_available():
    reps = load_mappings().reps
    for rep in reps.reps:
        s = reps.schedule_for(rep)
        assert s.week is None and s.holidays == frozenset() and s.out_of_office == ()
        assert s.timezone == rep.timezone
        for at in (datetime(2025, 6, 7, 3, 0, tzinfo=UTC), datetime(2025, 12, 25, 12, 0, tzinfo=UTC)):
            assert available(s, at)


def test_top_level_block_with_a_rep_override(cfg):
    (cfg / "holidays").mkdir()
    (cfg / "holidays" / "de.ics").write_text(ICS)
    top = (
        "availability:\n"
        "  working_hours:\n"
        '    mon-fri: "09:00-17:30"\n'
        '    fri: "09:00-13:00"        # a single day beats the range\n'
        "    wed: off\n"
        "  out_of_office: [{from: 2025-08-04, to: 2025-08-08}]\n"
        "  holidays_file: holidays/de.ics\n"
    )
    dana = 'availability: {working_hours: {"sat, sun": ["10:00-12:00", "14:00-16:00"]}, holidays: [2025-07-04], out_of_office: [2025-09-01]}'
    write_reps(cfg, top, dana)
    reps = load_mappings(cfg).reps
    dana_s, lee = reps.schedule_for(reps.reps[0]), reps.schedule_for(reps.reps[1])
    assert lee.timezone == "America/New_York"
    assert lee.week == (((540, 1050),), ((540, 1050),), (), ((540, 1050),), ((540, 780),), (), ())
    for d in (
        date(2024, 12, 25),
        date(2024, 12, 26),
        date(2030, 12, 25),
        date(2025, 10, 3),
        date(2025, 5, 1),
    ):
        assert d in lee.holidays
    assert date(2025, 6, 1) not in lee.holidays and date(2025, 5, 2) not in lee.holidays
    assert lee.day_off(date(2025, 8, 6)) and not lee.day_off(date(2025, 8, 11))
    # Dana's own keys replace the top-level ones; out-of-office dates add up
    assert dana_s.week == ((), (), (), (), (), ((600, 720), (840, 960)), ((600, 720), (840, 960)))
    assert dana_s.holidays == {date(2025, 7, 4)}
    assert dana_s.day_off(date(2025, 8, 6)) and dana_s.day_off(date(2025, 9, 1))


def test_a_holidays_file_is_read_relative_to_a_combined_file(tmp_path):
    import yaml

    data = {
        name: yaml.safe_load((default_dir() / f"{name}.yaml").read_text())
        for name in ("lifecycle", "fields", "sales_ready", "reps", "handoff")
    }
    data["reps"]["availability"] = {"holidays_file": "de.ics"}
    (tmp_path / "de.ics").write_text(ICS)
    (tmp_path / "all.yaml").write_text(yaml.safe_dump(data))
    reps = load_mappings(tmp_path / "all.yaml").reps
    assert date(2025, 10, 3) in reps.schedule_for(reps.reps[2]).holidays


def test_day_names_ranges_and_lists(cfg):
    write_reps(
        cfg,
        'availability: {working_hours: {Monday: "8-12", fri-mon: "10:00-11:00", "tue, thu": "13:00-24:00"}}\n',
    )
    week = load_mappings(cfg).reps.availability.working_hours
    assert week == (
        ((480, 720),),  # monday beats fri-mon
        ((780, 1440),),
        (),
        ((780, 1440),),
        ((600, 660),),
        ((600, 660),),
        ((600, 660),),
    )


def end(path: Path) -> int:
    return len(path.read_text().splitlines())


BAD = [
    # (block appended to reps.yaml, text of the line the error must name, pattern)
    ('working_hours: {moon: "09:00-17:00"}', "moon", r"working_hours\.moon: unknown weekday 'moon'"),
    ('working_hours: {mon-fry: "09:00-17:00"}', "mon-fry", r"unknown weekday 'fry'"),
    ('working_hours: {mon: "25:00-26:00"}', "25:00", r"working_hours\.mon: '25:00' is not a time of day"),
    ('working_hours: {mon: "09:60-17:00"}', "09:60", r"'09:60' is not a time of day"),
    ('working_hours: {mon: "nine-five"}', "nine", r"'nine' is not a time; expected HH:MM"),
    (
        'working_hours: {mon: "24:00-24:00"}',
        "24:00-24:00",
        r"'24:00' is not a time of day \(00:00 to 23:59\)",
    ),
    ('working_hours: {mon: "17:00-09:00"}', "17:00-09:00", r"the end is not after the start"),
    ('working_hours: {mon: "09:00"}', '"09:00"', r"expected a start and an end"),
    (
        'working_hours: {mon: "09:00-13:00, 12:00-17:00"}',
        "12:00",
        r"the hours 09:00-13:00, 12:00-17:00 overlap",
    ),
    ("working_hours: {mon: 9}", "mon: 9", r'expected hours like "09:00-17:30"'),
    (
        'working_hours: {mon-fri: "09:00-17:00", thu-sat: "10:00-12:00"}',
        "thu-sat",
        r"thu is already given by 'mon-fri'",
    ),
    (
        'working_hours: {mon: "09:00-17:00", monday: "10:00-12:00"}',
        "monday",
        r"mon is already given by 'mon'",
    ),
    ('working_hours: {"mon, mon": "09:00-17:00"}', "mon, mon", r"mon is named twice"),
    ("working_hours: {mon-fri: off}", "off", r"no working time on any day"),
    ('working_hours: "09:00-17:00"', "working_hours", r"expected weekdays mapped to hours"),
    (
        "out_of_office: [{from: 2025-08-10, to: 2025-08-01}]",
        "2025-08-10",
        r"out_of_office\[0\]: to \(2025-08-01\) is before from",
    ),
    ("out_of_office: [{from: 2025-08-10}]", "2025-08-10", r"out_of_office\[0\]\.to: required key is missing"),
    (
        "out_of_office: [{from: 2025-08-10, to: 2025-08-12, until: 2025-08-12}]",
        "until",
        r"out_of_office\[0\]\.until: unknown key",
    ),
    ("out_of_office: [2025-02-30]", "2025-02-30", r"cannot read this value"),
    ("holidays: [christmas]", "christmas", r"holidays\[0\]: Input should be a valid date"),
    ("holidays_file: nowhere.ics", "nowhere", r"holidays_file: cannot read .*nowhere\.ics: No such file"),
    ("holidays_file: 3", "holidays_file", r"holidays_file: expected the path of an iCalendar"),
    ("working_hour: {}", "working_hour", r"availability\.working_hour: unknown key"),
]


@pytest.mark.parametrize(("block", "needle", "pattern"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_block_is_one_line_naming_its_line(cfg, capsys, block, needle, pattern):
    path = write_reps(cfg, f"availability:\n  {block}\n")
    check_one_line(cfg, capsys, path, needle, pattern)


def check_one_line(
    cfg: Path, capsys: pytest.CaptureFixture[str], path: Path, needle: str, pattern: str
) -> None:
    lines = path.read_text().splitlines()
    line = max(i for i, text in enumerate(lines, 1) if needle in text)
    assert main(["validate", "--offline", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    out = [ln for ln in err.splitlines() if ln]
    assert len(out) == 1 and "Traceback" not in err, err
    assert out[0].startswith(f"error: {path}:{line}: "), out[0]
    assert re.search(pattern, out[0]), out[0]


def test_a_bad_entry_in_a_block_mapping_names_its_own_line(cfg, capsys):
    top = (
        'availability:\n  working_hours:\n    mon-fri: "09:00-17:00"\n    sat: "10:00-25:00"\n    sun: off\n'
    )
    path = write_reps(cfg, top)
    check_one_line(cfg, capsys, path, "sat:", r"availability\.working_hours\.sat: '25:00' is not a time")


def test_a_bad_rep_block_names_the_rep(cfg, capsys):
    path = write_reps(cfg, dana='availability: {working_hours: {mon: "8:00-7:00"}}')
    check_one_line(cfg, capsys, path, "Dana", r"reps\[0\]\.availability\.working_hours\.mon: '8:00-7:00'")


ICS_BAD = [
    ("not a calendar at all\n", r"not a usable iCalendar file: "),
    ("BEGIN:VEVENT\nUID:x\nEND:VEVENT\n", r"holds a VEVENT, not a VCALENDAR"),
    (
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2025XX\nEND:VEVENT\nEND:VCALENDAR\n",
        r"not a usable iCalendar file: .*2025XX",
    ),
    (
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20250101T100000Z\nDTEND:20250101T110000Z\nSUMMARY:Standup\nEND:VEVENT\nEND:VCALENDAR\n",
        r"event 'Standup' on 2025-01-01 has a time of day; a holiday calendar lists all-day events",
    ),
    (
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nRRULE:FREQ=DAILY\nSUMMARY:Forever\nEND:VEVENT\nEND:VCALENDAR\n",
        r"event 'Forever' repeats daily without an end",
    ),
    (
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nRRULE:FREQ=SOMETIMES\nEND:VEVENT\nEND:VCALENDAR\n",
        r"not a usable iCalendar file: .*SOMETIMES",
    ),
]


@pytest.mark.parametrize(("text", "pattern"), ICS_BAD, ids=[p for _, p in ICS_BAD])
def test_a_broken_holidays_file_is_one_line_at_the_key(cfg, capsys, text, pattern):
    (cfg / "h.ics").write_text(text)
    path = write_reps(cfg, "availability:\n  holidays_file: h.ics\n")
    check_one_line(cfg, capsys, path, "holidays_file", r"availability\.holidays_file: .*h\.ics: .*" + pattern)


def test_a_holidays_file_that_is_a_directory_or_huge(cfg, capsys):
    (cfg / "dir.ics").mkdir()
    path = write_reps(cfg, "availability:\n  holidays_file: dir.ics\n")
    check_one_line(
        cfg, capsys, path, "holidays_file", r"expected an iCalendar \(\.ics\) file of at most 1,048,576 bytes"
    )
    (cfg / "big.ics").write_bytes(b"x" * ((1 << 20) + 1))
    path.write_text(path.read_text().replace("dir.ics", "big.ics"))
    check_one_line(cfg, capsys, path, "holidays_file", r"big\.ics: expected an iCalendar")
