"""The report page's figures from known stage entry times, handoffs and queue rows, on
SQLite and PostgreSQL: exact cohort conversion, time in stage (median, p90), rep weeks,
nurture ages and the payoff (``sync.funnel`` through ``report_data``)."""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, timedelta

import pytest

from mappings.loader import load_mappings
from sync.funnel import quantile
from sync.items import QueueItem, Snapshot
from sync.report import report_data
from sync.state import Identity, LedgerEntry, StateStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
D = timedelta(days=1)
WEEK1, WEEK2 = "2026-03-02", "2026-03-09"


@pytest.fixture
def state(state_url):
    s = StateStore(state_url)
    s.create_schema()
    yield s
    s.close()


def _stages(state: StateStore, entries: dict[str, dict[str, datetime]]) -> None:
    """Record each person's stage entries at the given times, in time order."""
    flat = sorted((at, key, stage) for key, stages in entries.items() for stage, at in stages.items())
    for at, key, stage in flat:
        state.record_stages({key: stage}, at + 30 * D, {key: at})  # seen later, entered then


def _handoff(
    state: StateStore, key: str, rep: str, at: datetime, crms: tuple[str, ...] = ("hubspot",)
) -> None:
    entries = [
        LedgerEntry(
            key=f"{key}#1",
            crm=crm,
            person_key=key,
            episode=1,
            rep_email=rep,
            week_start=(at - timedelta(days=at.weekday())).date(),
            status="intent",
            task_id=None,
            score=80,
            reasons=[],
            planned_at=at,
        )
        for crm in crms
    ]
    state.record_intents(entries, None)
    state.confirm_many([(f"{key}#1", crm, f"task-{key}-{crm}") for crm in crms], at)


# mql -> sql hours: a 10, b 20, c 30, e 40, g 50; f entered sql BEFORE mql: no conversion
PEOPLE = {
    "a": {"mql": T0, "sql": T0 + 10 * H, "opportunity": T0 + 3 * D, "customer": T0 + 10 * D},
    "b": {"mql": T0 + D, "sql": T0 + D + 20 * H},
    "c": {"mql": T0 + 2 * D, "sql": T0 + 2 * D + 30 * H, "opportunity": T0 + 6 * D},
    "d": {"mql": T0 + 3 * D},
    "f": {"sql": T0 - D, "mql": T0 + 4 * D},
    "g": {"mql": T0 + 4 * D, "sql": T0 + 4 * D + 50 * H},
    "e": {"mql": T0 + 7 * D, "sql": T0 + 7 * D + 40 * H},
}
CRM = {
    "a": "hubspot",
    "b": "hubspot",
    "c": "hubspot",
    "d": "hubspot",
    "f": "hubspot",
    "g": "both",
    "e": "salesforce",
}


def _identities(state: StateStore) -> None:
    state.save_identities(
        Identity(
            person_key=k,
            hubspot_id=f"h{k}" if crm in ("hubspot", "both") else None,
            salesforce_id=f"s{k}" if crm in ("salesforce", "both") else None,
            salesforce_type="lead" if crm != "hubspot" else None,
            email=f"{k}@x.example",
        )
        for k, crm in CRM.items()
    )


def _data(state: StateStore, now: datetime = T0 + 40 * D) -> dict:
    return report_data(state, load_mappings(None), now)


def test_cohorts_and_time_in_stage_are_exact(state):
    _identities(state)
    _stages(state, PEOPLE)
    _handoff(state, "a", "ana@x.example", T0 + 5 * H)
    _handoff(state, "c", "ana@x.example", T0 + 2 * D, crms=("hubspot", "salesforce"))  # one handoff, 2 tasks
    d = _data(state)

    rows = {(r["week"], r["crm"]): r for r in d["cohorts"]}
    assert rows == {
        (WEEK1, "hubspot"): {  # a, b, c, d, f: f's sql came before its mql
            "week": WEEK1,
            "crm": "hubspot",
            "mql": 5,
            "sql": 3,
            "opportunity": 2,
            "customer": 1,
            "handed_off": 2,
        },
        (WEEK1, "both"): {
            "week": WEEK1,
            "crm": "both",
            "mql": 1,
            "sql": 1,
            "opportunity": 0,
            "customer": 0,
            "handed_off": 0,
        },
        (WEEK2, "salesforce"): {
            "week": WEEK2,
            "crm": "salesforce",
            "mql": 1,
            "sql": 1,
            "opportunity": 0,
            "customer": 0,
            "handed_off": 0,
        },
    }

    stay = {(r["from"], r["crm"]): r for r in d["time_in_stage"]}
    hours = [10, 20, 30, 40, 50]
    assert stay[("mql", "all")] == {
        "from": "mql",
        "to": "sql",
        "crm": "all",
        "people": 5,
        "median_hours": statistics.median(hours),  # 30
        "p90_hours": statistics.quantiles(hours, n=10, method="inclusive")[-1],  # 46
    }
    assert (stay[("mql", "hubspot")]["median_hours"], stay[("mql", "hubspot")]["p90_hours"]) == (25.0, 44.0)
    assert (stay[("mql", "salesforce")]["median_hours"], stay[("mql", "salesforce")]["p90_hours"]) == (
        45.0,
        49.0,
    )
    # sql -> opportunity: a 62h (3d - 10h), c 66h (6d - 2d - 30h); opportunity -> customer: a 7 days
    assert (stay[("sql", "all")]["people"], stay[("sql", "all")]["median_hours"]) == (2, 64.0)
    assert stay[("sql", "all")]["p90_hours"] == pytest.approx(62 + 0.9 * 4)
    assert (stay[("opportunity", "all")]["median_hours"], stay[("opportunity", "all")]["p90_hours"]) == (
        168.0,
        168.0,
    )
    assert ("subscriber", "all") not in stay and ("lead", "all") not in stay  # no recorded pairs: no figure

    assert d["handoffs_per_rep"] == {"ana@x.example": 2}  # c's two tasks are one handoff
    assert d["rep_weeks"] == [{"week": WEEK1, "rep": "ana@x.example", "assigned": 2, "handed_off": 2}]
    payoff = d["payoff"]
    assert payoff["handed_off"] == {"people": 2, "sql": 2, "opportunity": 2, "customer": 1}
    # never handed off MQLs: b, d, f, g, e - reached sql at or after mql: b, g, e
    assert payoff["not_handed_off"] == {"people": 5, "sql": 3, "opportunity": 0, "customer": 0}
    assert payoff["by_rep"] == [
        {"rep": "ana@x.example", "people": 2, "sql": 2, "opportunity": 2, "customer": 1}
    ]
    card = payoff["scorecard"]
    assert (card["win_rate_handed_off"], card["win_rate_not_handed_off"], card["sql_rate_handed_off"]) == (
        0.5,
        0.0,
        1.0,
    )
    march = {r["crm"]: r for r in payoff["monthly"] if r["month"] == "2026-03"}
    assert march["hubspot"] == {
        "month": "2026-03",
        "crm": "hubspot",
        "mql": 5,
        "handed_off": 2,
        "waiting": 0,
        "sales_ready": 2,
    }
    assert card["mql_per_month"] == 7.0 and card["sales_ready_per_month"] == 2.0  # one month recorded


def test_stage_entries_per_week_and_the_funnel_now_per_crm(state):
    _identities(state)
    _stages(state, PEOPLE)
    d = _data(state)
    weekly = {(r["week"], r["stage"], r["crm"]): r["entered"] for r in d["funnel_weekly"]}
    assert weekly[(WEEK1, "mql", "hubspot")] == 5
    assert weekly[("2026-02-23", "sql", "hubspot")] == 1  # f's sql, the Sunday before
    assert weekly[(WEEK2, "sql", "salesforce")] == 1
    assert sum(weekly.values()) == sum(len(s) for s in PEOPLE.values())
    now = {(r["stage"], r["crm"]): r["people"] for r in d["funnel_now"]}
    assert now == {
        ("customer", "hubspot"): 1,
        ("sql", "hubspot"): 1,  # b
        ("opportunity", "hubspot"): 1,  # c
        ("mql", "hubspot"): 2,  # d, and f (moved back to mql last)
        ("sql", "both"): 1,
        ("sql", "salesforce"): 1,
    }


def _queued(
    key: str, at: datetime, reason: str = "rep capacity: every eligible rep is at weekly capacity"
) -> QueueItem:
    return QueueItem(person_key=key, score=70, snapshot=Snapshot(name=key), queued_at=at, reason=reason)


def test_nurture_queue_sizes_and_ages(state):
    _identities(state)
    now = T0 + 40 * D
    state.enqueue_many(
        [
            _queued("a", now - 2 * H),
            _queued("b", now - 2 * D),
            _queued("c", now - 10 * D),
            _queued("e", now - 30 * D),
            _queued("g", now - 5 * D, reason="set aside: no email address"),
        ]
    )
    state.record_run("ok", {"at": now.isoformat(), "kept_in_nurture": 4}, now - D)
    state.record_run("ok", {"at": now.isoformat(), "kept_in_nurture": 6}, now - D + H)
    state.record_run("failed", {"error": "boom"}, now)
    d = _data(state, now)
    nurture = d["nurture"]
    assert (nurture["waiting"], nurture["set_aside"], nurture["oldest_days"]) == (4, 1, 30.0)
    assert sorted((r["age"], r["crm"], r["people"]) for r in nurture["ages"]) == [
        ("1-2 weeks", "hubspot", 1),
        ("1-3 days", "hubspot", 1),
        ("4 weeks or more", "salesforce", 1),
        ("under 1 day", "hubspot", 1),
    ]
    assert nurture["daily"] == [{"day": (now - D).date().isoformat(), "waiting": 6}]  # the day's largest
    assert d["in_nurture_queue"] == 5  # the existing figure: everyone on the queue


def test_an_empty_state_has_no_figures_and_no_made_up_rates(state):
    d = _data(state)
    assert d["cohorts"] == [] and d["time_in_stage"] == [] and d["rep_weeks"] == []
    card = d["payoff"]["scorecard"]
    assert card["mql_per_month"] is None and card["win_rate_handed_off"] is None
    assert d["nurture"] == {
        "waiting": 0,
        "set_aside": 0,
        "oldest_days": None,
        "ages": [],
        "daily": [],
        "overflow_daily": [],
    }
    assert d["pending"] == {}  # outcomes, overflow and content arrived
    assert (d["content"]["handoffs"], d["content"]["recommended"], d["content"]["used"]) == (0, 0, 0)
    assert (
        d["outcomes"]["leads_handed_off"] == 0
        and d["outcomes"]["time_to_first_touch_hours"]["median"] is None
    )
    assert d["reps"][0]["weekly_capacity"] > 0


def test_quantile_matches_statistics_inclusive():
    for values in ([5.0], [1.0, 2.0], [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]):
        ranked = dict(enumerate(sorted(values), start=1))
        n = len(values)
        assert quantile(ranked, n, 1, 2) == pytest.approx(statistics.median(values))
        if n > 1:
            p90 = statistics.quantiles(values, n=10, method="inclusive")[-1]
            assert quantile(ranked, n, 9, 10) == pytest.approx(p90)
    assert quantile({}, 0, 1, 2) is None
    assert date.fromisoformat(WEEK1).weekday() == 0
