"""Capacity-aware routing (pure): never above capacity, highest score first."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.models import Pool, Rep
from sync.routing import Candidate, outside_enough, outside_load, plan_routing, week_start


def rep(email: str, minutes: int = 120, per_lead: int = 20, **kw) -> Rep:
    return Rep(
        name=email.split("@")[0],
        email=email,
        works_in="salesforce",
        weekly_followup_minutes=minutes,
        minutes_per_lead=per_lead,
        **kw,
    )


def cand(i: int, score: int, country: str = "United States", owner: str | None = None) -> Candidate:
    return Candidate(f"p{i}", score, {"country": country}, owner)


def test_capacity_is_floor_of_minutes_over_minutes_per_lead():
    assert rep("a@x.io", 120, 20).weekly_capacity == 6
    assert rep("a@x.io", 130, 20).weekly_capacity == 6
    assert rep("a@x.io", 19, 20).weekly_capacity == 0


def test_thirty_leads_one_rep_six_handed_rest_deferred_by_score():
    cands = [cand(i, 100 - i) for i in range(30)]
    plan = plan_routing(cands, [rep("dana@x.io")], used={})
    assert [a.candidate.person_key for a in plan.assignments] == [f"p{i}" for i in range(6)]
    assert len(plan.deferrals) == 24
    assert all(d.reason.startswith("rep capacity") for d in plan.deferrals)
    assert plan.loads["dana@x.io"].left == 0


def test_used_capacity_this_week_counts():
    plan = plan_routing([cand(i, 80) for i in range(5)], [rep("dana@x.io")], used={"dana@x.io": 4})
    assert len(plan.assignments) == 2


def test_existing_owner_first_when_capacity_left_else_most_capacity():
    reps = [rep("a@x.io", 120), rep("b@x.io", 200)]
    plan = plan_routing([cand(1, 90, owner="a@x.io"), cand(2, 80)], reps, used={})
    got = {a.candidate.person_key: (a.rep.email, a.why) for a in plan.assignments}
    assert got["p1"] == ("a@x.io", "existing owner")
    assert got["p2"] == ("b@x.io", "most capacity left")
    full = plan_routing([cand(1, 90, owner="a@x.io")], reps, used={"a@x.io": 6})
    assert full.assignments[0].rep.email == "b@x.io"


def test_territory_pool_and_inactive():
    reps = [
        rep("us@x.io", territories=("United States",)),
        rep("off@x.io", active=False),
        rep("ent@x.io", pools=("enterprise",)),
    ]
    pools = (Pool(name="enterprise", field="company_size", min=1000),)
    plan = plan_routing(
        [
            Candidate("de", 90, {"country": "Germany"}),
            Candidate("big", 80, {"country": "Germany", "company_size": "5000"}),
        ],
        reps,
        used={},
        pools=pools,
    )
    assert {a.candidate.person_key: a.rep.email for a in plan.assignments} == {"big": "ent@x.io"}
    assert plan.deferrals[0].reason.startswith("no eligible rep")


def test_week_starts_monday_in_rep_time_zone():
    sunday_night_utc = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # Monday 03:00 UTC
    assert week_start(sunday_night_utc, "UTC").isoformat() == "2026-11-23"
    assert week_start(sunday_night_utc, "America/Chicago").isoformat() == "2026-11-16"


@settings(max_examples=150, deadline=None)
@given(
    scores=st.lists(st.integers(0, 100), max_size=60),
    minutes=st.lists(
        st.tuples(st.integers(0, 300), st.integers(1, 60), st.integers(0, 10)), min_size=1, max_size=5
    ),
)
def test_never_above_capacity_and_higher_scores_first(scores, minutes):
    reps = [rep(f"r{i}@x.io", m, p) for i, (m, p, _) in enumerate(minutes)]
    used = {f"r{i}@x.io": u for i, (_, _, u) in enumerate(minutes)}
    plan = plan_routing([cand(i, s) for i, s in enumerate(scores)], reps, used)
    for r in reps:
        got = sum(1 for a in plan.assignments if a.rep.email == r.email)
        assert got <= max(0, r.weekly_capacity - used[r.email])
    assert len(plan.assignments) + len(plan.deferrals) == len(scores)
    if plan.assignments and plan.deferrals:  # one pool of equal reps: nobody deferred outscores a handoff
        assert min(a.candidate.score for a in plan.assignments) >= max(
            d.candidate.score for d in plan.deferrals
        )


# --- outside work (reps.yaml outside_work) -------------------------------------------


def test_outside_items_count_one_lead_each_by_default_never_above_capacity():
    dana = rep("dana@x.io", 120, 20)  # capacity 6
    assert [outside_load(dana, n) for n in (0, 1, 4, 6, 9)] == [0, 1, 4, 6, 6]
    assert outside_enough(dana) == 6


def test_outside_items_with_minutes_each_take_minutes_of_the_week():
    dana = rep("dana@x.io", 130, 20)  # capacity 6, 10 spare minutes
    assert outside_load(dana, 1, minutes_each=10) == 0  # the spare minutes absorb it
    assert outside_load(dana, 2, minutes_each=10) == 1  # 110 left: 5 leads
    assert outside_load(dana, 3, minutes_each=30) == 4  # 40 left: 2 leads
    assert outside_load(dana, 50, minutes_each=30) == 6
    assert outside_enough(dana, minutes_each=30) == 5  # 5 x 30 >= 130: nothing left


def test_outside_work_added_to_used_leaves_only_the_rest():
    dana, lee = rep("dana@x.io"), rep("lee@x.io")
    used = {"dana@x.io": 1 + outside_load(dana, 4), "lee@x.io": outside_load(lee, 6)}
    plan = plan_routing([cand(i, 90 - i) for i in range(5)], [dana, lee], used=used)
    assert [a.rep.email for a in plan.assignments] == ["dana@x.io"]  # 6 - 1 - 4 = 1; Lee is full
    assert plan.loads["lee@x.io"].left == 0 and len(plan.deferrals) == 4
