"""``sync.simulate`` on a state built directly: every mirrored person evaluated under each
mapping, the queue routed within the week's capacity left (the ledger's handoffs, outside
work as the last cycle counted it), nothing written; ``sync.remap``: a changed mapping
marks everyone for the next cycle."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from crm_handoff.records import Person
from mappings.loader import default_dir, load_mappings
from mappings.models import MappingSet
from sync.context import CycleContext
from sync.engine import Engine
from sync.remap import STREAM, WATERMARK_CRM, evaluation_fingerprint, mark_on_mapping_change, people_pages
from sync.routing import week_start
from sync.simulate import simulate
from sync.state import LedgerEntry, StateStore

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # a Wednesday, 10:00 in New York
DANA = "dana@northwind.example"
FIT = {  # 45 points: sales-ready from threshold 45 down
    "jobtitle": "VP Marketing",
    "company": "Acme",
    "industry": "COMPUTER_SOFTWARE",
    "numemployees": "250",
    "country": "United States",
    "lifecyclestage": "marketingqualifiedlead",
}


@pytest.fixture
def state(state_url):
    s = StateStore(state_url)
    s.create_schema()
    owners = {"at": NOW.isoformat(), "owners": [{"id": "o1", "email": DANA, "name": "Dana", "active": True}]}
    s.set_watermark("hubspot", "owners", json.dumps(owners))
    yield s
    s.close()


def mapping(tmp_path: Path, name: str, minutes: int = 60, threshold: int = 60, **reps: Any) -> MappingSet:
    target = tmp_path / name
    shutil.copytree(default_dir(), target)
    rep = {"name": "Dana", "email": DANA, "works_in": "hubspot", "minutes_per_lead": 20}
    rep["weekly_followup_minutes"] = minutes
    (target / "reps.yaml").write_text(yaml.safe_dump({"version": 1, "reps": [rep], **reps}))
    ready = yaml.safe_load((target / "sales_ready.yaml").read_text())
    ready["threshold"] = threshold
    (target / "sales_ready.yaml").write_text(yaml.safe_dump(ready, sort_keys=False))
    return load_mappings(target)


def contact(i: int, **values: str) -> Person:
    props = {"email": f"p{i}@co{i}.example", "firstname": f"P{i}", "lastname": f"L{i}", **FIT, **values}
    return Person("hubspot", f"{1000 + i}", "contact", props["email"], props, NOW - timedelta(days=1))


def handoff_this_week(state: StateStore, key: str, at: datetime) -> None:
    entry = LedgerEntry(
        key, "hubspot", key.split("#")[0], 1, DANA, week_start(NOW, "UTC"), "done", "t", 70, [], at
    )
    state.record_intents([entry], None)


def test_only_the_lowered_threshold_s_extra_people_are_handed_off_within_the_capacity_left(state, tmp_path):
    state.save_people([contact(i) for i in range(5)] + [contact(9, jobtitle="Analyst")])  # 45 x5, 25
    handoff_this_week(state, "hs-earlier#1", NOW - timedelta(days=1))  # 1 of the 3 this week used
    current, lower = mapping(tmp_path, "cur", minutes=60), mapping(tmp_path, "new", minutes=60, threshold=45)

    data = simulate(state, [("current", "cur", current), ("new", "new", lower)], NOW, ["hubspot"])

    assert data["current"]["handed_off"] == 0 and data["current"]["sales_ready"] == 0
    assert data["new"]["sales_ready"] == 5 and data["new"]["handed_off"] == 2
    assert data["new"]["kept_in_nurture"] == 3
    assert data["new"]["nurture_reasons"] == {"rep capacity: every eligible rep is at weekly capacity": 3}
    assert data["new"]["capacity_per_rep"][DANA] == {
        "capacity": 3,
        "used_before": 1,
        "outside_work": 0,
        "assigned": 2,
        "left": 0,
    }
    assert data["per_rep"] == {DANA: {"current": 0, "new": 2}}
    assert [p["person_key"] for p in data["only_new"]["people"]] == ["hs-1000", "hs-1001"]  # queue order
    assert data["only_new"]["people"][0]["under_current"].startswith("not sales-ready (score 45 of 60): ")
    assert (
        data["only_current"]["count"] == 0
        and data["outside_work"]["source"] == "not counted (reps.yaml outside_work is off)"
    )


def test_outside_work_is_the_last_cycle_s_count_this_week_and_no_crm_is_asked(state, tmp_path):
    state.save_people([contact(i) for i in range(3)])
    handoff_this_week(state, "hs-a#1", NOW - timedelta(hours=3))  # before the last cycle
    handoff_this_week(state, "hs-b#1", NOW - timedelta(hours=1))  # after it
    # the last cycle counted 1 handoff + 2 leads of outside work before routing
    summary = {"at": (NOW - timedelta(hours=2)).isoformat(), "dry_run": False}
    summary["capacity_per_rep"] = {DANA: {"capacity": 6, "used_before": 3, "assigned": 0, "left": 3}}
    state.record_run("ok", summary, NOW - timedelta(hours=2))
    outside = {"outside_work": {"hubspot": {"task_types": "any"}}}
    cur = mapping(tmp_path, "cur", minutes=120, **outside)
    new = mapping(tmp_path, "new", minutes=120, threshold=45, **outside)

    data = simulate(state, [("current", "cur", cur), ("new", "new", new)], NOW, ["hubspot"])

    load = data["new"]["capacity_per_rep"][DANA]
    assert load == {"capacity": 6, "used_before": 4, "outside_work": 2, "assigned": 2, "left": 0}
    assert data["outside_work"]["new"] == {DANA: 2}
    assert data["outside_work"]["source"].startswith("the last cycle's count this week (no CRM call")
    assert data["new"]["handed_off"] == 2 and data["new"]["kept_in_nurture"] == 1
    without = mapping(tmp_path, "plain", minutes=120, threshold=45)  # outside work not counted
    data = simulate(state, [("current", "cur", cur), ("new", "plain", without)], NOW, ["hubspot"])
    assert data["new"]["capacity_per_rep"][DANA]["outside_work"] == 0 and data["new"]["handed_off"] == 3


def test_a_rep_without_a_crm_user_in_the_owners_cache_gets_nothing(state, tmp_path):
    state.save_people([contact(1)])
    state.set_watermark("hubspot", "owners", json.dumps({"at": NOW.isoformat(), "owners": []}))
    new = mapping(tmp_path, "new", threshold=45)
    data = simulate(
        state, [("current", "cur", mapping(tmp_path, "cur")), ("new", "new", new)], NOW, ["hubspot"]
    )
    assert data["new"]["handed_off"] == 0 and data["new"]["sales_ready"] == 1
    assert data["new"]["unavailable_reps"] == {DANA: "no active hubspot user with this email"}


def test_a_person_in_both_crms_is_evaluated_once_however_the_pages_fall(state, tmp_path):
    hs = contact(1)
    sf = Person("salesforce", "00Q1", "lead", hs.email, {"Email": hs.email, "LastName": "L1"}, NOW)
    state.save_people([hs, sf, *[contact(i) for i in range(2, 1200)]])  # more than a page
    new = mapping(tmp_path, "new", threshold=45)
    data = simulate(
        state, [("current", "cur", mapping(tmp_path, "cur")), ("new", "new", new)], NOW, ["hubspot"]
    )
    assert data["new"]["sales_ready"] == 1199  # one profile for the two records
    assert data["new"]["handed_off"] == 3 and data["only_new"]["count"] == 3


def test_simulate_leaves_the_state_file_byte_for_byte_the_same(tmp_path):
    path = tmp_path / "state.db"
    state = StateStore(f"sqlite:///{path}")
    state.create_schema()
    state.save_people([contact(i) for i in range(20)])
    state.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    state = StateStore(f"sqlite:///{path}")
    try:
        simulate(
            state,
            [("current", "c", mapping(tmp_path, "c")), ("new", "n", mapping(tmp_path, "n", threshold=45))],
            NOW,
        )
    finally:
        state.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


# --- sync.remap -----------------------------------------------------------------


def test_the_evaluation_fingerprint_follows_sales_ready_not_reps(tmp_path):
    base = evaluation_fingerprint(mapping(tmp_path, "a"))
    assert evaluation_fingerprint(mapping(tmp_path, "b", minutes=200)) == base  # routing only
    assert evaluation_fingerprint(mapping(tmp_path, "c", threshold=45)) != base


def test_a_changed_mapping_marks_every_mirrored_person_once(state, tmp_path):
    state.save_people([contact(i) for i in range(7)])
    first, lower = mapping(tmp_path, "a"), mapping(tmp_path, "b", threshold=45)
    ctx = CycleContext(now=NOW, dry_run=False)
    assert mark_on_mapping_change(Engine(first, state, {}), ctx) == 0  # a first cycle: recorded
    assert state.watermark(WATERMARK_CRM, STREAM) == evaluation_fingerprint(first) and state.marked(100) == []
    assert mark_on_mapping_change(Engine(first, state, {}), ctx) == 0  # unchanged

    dry = CycleContext(now=NOW, dry_run=True)
    assert mark_on_mapping_change(Engine(lower, state, {}), dry) == 7  # a dry run: in memory only
    assert len(dry.marks) == 7 and state.marked(100) == []
    assert state.watermark(WATERMARK_CRM, STREAM) == evaluation_fingerprint(first)

    assert mark_on_mapping_change(Engine(lower, state, {}), ctx) == 7
    assert state.marked(100) == sorted(("hubspot", f"{1000 + i}") for i in range(7))
    assert state.watermark(WATERMARK_CRM, STREAM) == evaluation_fingerprint(lower)
    assert mark_on_mapping_change(Engine(lower, state, {}), ctx) == 0


def test_people_pages_read_every_record_once_in_pages(state):
    state.save_people([contact(i) for i in range(25)])
    pages = list(people_pages(state, size=10))
    assert [len(p) for p in pages] == [10, 10, 5]
    ids = [p.id for page in pages for p in page]
    assert ids == sorted(ids) and len(set(ids)) == 25


def test_the_same_mapping_on_both_sides_differs_in_nothing(state, tmp_path):
    state.save_people([contact(i) for i in range(4)])
    same = mapping(tmp_path, "same", threshold=45)
    data = simulate(state, [("current", "a", same), ("new", "b", same)], NOW, ["hubspot"])
    assert data["current"]["handed_off"] == data["new"]["handed_off"] == 3  # capacity 3
    assert data["only_new"]["count"] == data["only_current"]["count"] == data["moved"]["count"] == 0
    assert data["current"]["nurture_reasons"] == data["new"]["nurture_reasons"] != {}


def test_the_bench_runs_the_real_cli_on_a_seeded_state_and_finds_the_extra_handoffs(tmp_path):
    from bench.simulate import measure

    row = measure(600, tmp_path)
    assert row["ready_new"] > row["ready_current"] > 0
    assert row["extra"] == row["handed_new"] - row["handed_current"] > 0  # capacity is ample
    assert row["peak_rss_mb"] > 10 and row["wall_s"] > 0
