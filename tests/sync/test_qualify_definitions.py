"""Sales-ready definitions (pure): the shipped three example definitions and the score one,
decided for people meeting none, one, part of one, part of two and two whole definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_handoff.records import ACTIVITY_KINDS, Activity
from mappings.loader import default_dir, load_mappings
from sync.qualify import judge, qualify

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
RULES = load_mappings().sales_ready
A, B, C, D = (
    "Downloads with a senior title",
    "Qualified by telemarketing",
    "Attended a webinar",
    "Score reaches the threshold",
)
# no fit points: a definition, not the score, decides these people
BASE = {
    "email": "ana@acme.io",
    "last_name": "Ruiz",
    "company": "Acme",
    "title": "Analyst",
    "industry": "RETAIL",
}
SENIOR = {"title": "VP Marketing"}
TARGET = {"industry": "COMPUTER_SOFTWARE"}


def act(kind: str, days_ago: float, n: int = 1, title: str = "") -> list[Activity]:
    at = NOW - timedelta(days=days_ago)
    return [Activity("hubspot", f"{kind}{days_ago}{i}{title}", kind, at, title=title) for i in range(n)]


DOWNLOADS_3 = act("content_download", 5, 3)
DOWNLOAD_1 = act("content_download", 40)  # in 60 days, not in 30
TM_CALL = act("call", 10, title="TM qualified - budget confirmed")
WEBINAR = act("webinar_attended", 20)


def decide(values: dict[str, str], activities: list[Activity], stage: str = "mql"):
    return qualify(RULES, {**BASE, **values}, stage, activities, NOW)


def checks_of(values: dict[str, str], activities: list[Activity]):
    """Every definition's check, by name."""
    return {c.name: c for c in judge(RULES, {**BASE, **values}, "mql", activities, NOW)[1]}


def test_the_shipped_file_has_the_three_example_definitions_and_the_score():
    assert [d.name for d in RULES.definitions] == [A, B, C, D]


def test_meeting_none_names_the_nearest_and_what_is_missing():
    q = decide({}, [])
    assert not q.qualified and q.definitions_met == ()
    assert q.nearest == C  # one condition short, as the score is; the webinar comes first
    assert q.missing == ("1 more webinar attended within 60 days",)
    assert q.next_step == "Attended a webinar: 1 more webinar attended within 60 days"


@pytest.mark.parametrize(
    ("values", "activities", "met"),
    [
        (SENIOR, DOWNLOADS_3, A),
        (TARGET, DOWNLOAD_1 + TM_CALL, B),
        ({}, WEBINAR, C),
    ],
    ids=["downloads-and-title", "telemarketing", "webinar"],
)
def test_meeting_one_definition_is_sales_ready_by_it(values, activities, met):
    q = decide(values, activities)
    assert q.qualified and q.definitions_met == (met,)
    assert q.score < RULES.threshold  # the definition decided, not the points
    assert q.nearest is None and q.missing == () and q.next_step == ""
    assert dict(q.met_details)[met]


def test_the_brief_detail_says_what_made_the_definition_hold():
    q = decide(SENIOR, DOWNLOADS_3)
    assert dict(q.met_details)[A] == "3 x content download in 30 days; Senior title (title 'VP Marketing')"


@pytest.mark.parametrize(
    ("values", "activities", "missing"),
    [
        (TARGET, TM_CALL, "1 more content download within 60 days"),
        (
            {},
            DOWNLOAD_1 + TM_CALL,
            "Target industry (industry one of COMPUTER_SOFTWARE, FINANCIAL_SERVICES, "
            "HOSPITAL_HEALTH_CARE (+3 more))",
        ),
        (
            TARGET,
            DOWNLOAD_1,
            "1 more call titled 'tm qualified' or 'qualified by telemarketing' within 60 days",
        ),
    ],
    ids=["no-download", "wrong-industry", "no-telemarketing"],
)
def test_two_of_three_conditions_in_each_way(values, activities, missing):
    q = decide(values, activities)
    assert not q.qualified and q.definitions_met == ()
    assert q.nearest == B and q.missing == (missing,)
    checks = checks_of(values, activities)
    assert sum(c.met for c in checks[B].conditions) == 2


@pytest.mark.parametrize(
    ("values", "activities", "missing"),
    [
        (SENIOR, act("content_download", 3, 1), "2 more content downloads within 30 days"),
        ({}, DOWNLOADS_3, "Senior title (title containing vp, vice president, director (+5 more))"),
    ],
    ids=["title-but-one-download", "downloads-but-no-title"],
)
def test_one_of_two_conditions_in_each_way(values, activities, missing):
    q = decide(values, activities)
    assert not q.qualified and q.nearest == A and q.missing == (missing,)


def test_a_call_without_the_outcome_does_not_count():
    q = decide(TARGET, DOWNLOAD_1 + act("call", 2, title="Left a voicemail"))
    assert q.nearest == B and q.missing[0].startswith("1 more call titled")


def test_part_of_two_the_one_with_more_conditions_held_is_nearest():
    # A: title held, 2 of 3 downloads; B: download and industry held, no telemarketing call
    q = decide({**SENIOR, **TARGET}, act("content_download", 3, 2))
    assert not q.qualified and q.definitions_met == ()
    assert q.nearest == B
    assert q.missing == ("1 more call titled 'tm qualified' or 'qualified by telemarketing' within 60 days",)
    checks = checks_of({**SENIOR, **TARGET}, act("content_download", 3, 2))
    assert checks[A].missing == ("1 more content download within 30 days",)


def test_part_of_two_equally_far_the_one_further_along_is_nearest():
    rules = RULES.model_validate(
        {
            "threshold": 60,
            "definitions": [
                {
                    "name": "Reader",
                    "all_of": [{"activity": "content_download", "at_least": 3, "within_days": 30}],
                },
                {
                    "name": "Clicker",
                    "all_of": [{"activity": "email_click", "at_least": 3, "within_days": 30}],
                },
            ],
        }
    )
    q = qualify(rules, BASE, "mql", act("content_download", 1) + act("email_click", 2, 2), NOW)
    assert q.nearest == "Clicker" and q.missing == ("1 more email click within 30 days",)
    q = qualify(rules, BASE, "mql", act("content_download", 1, 2) + act("email_click", 2, 2), NOW)
    assert q.nearest == "Reader" and q.missing == ("1 more content download within 30 days",)  # file order


def test_two_whole_definitions_are_both_named():
    q = decide(SENIOR, DOWNLOADS_3 + WEBINAR)
    assert q.qualified and q.definitions_met == (A, C)
    assert q.score == 55  # title 20, downloads 15, webinar 20: not by the score
    assert [name for name, _ in q.met_details] == [A, C]


def test_the_score_definition_says_how_many_points_and_a_rule_that_gives_them():
    q = decide({**SENIOR, **TARGET, "company_size": "300", "country": "Canada"}, [])
    checks = checks_of({**SENIOR, **TARGET, "company_size": "300", "country": "Canada"}, [])
    assert q.score == 45
    assert checks[D].missing == ("15 more points (score 45 of 60), e.g. Downloaded content (+15)",)


def test_the_score_definition_follows_the_threshold():
    person = {**SENIOR, **TARGET, "company_size": "300", "country": "Canada"}  # 45 points
    clicks = act("email_click", 2, 3)  # +10
    assert not decide(person, clicks).qualified
    lower = RULES.model_copy(update={"threshold": 55})
    q = qualify(lower, {**BASE, **person}, "mql", clicks, NOW)
    assert q.qualified and q.definitions_met == (D,) and q.score == 55


def test_blockers_still_apply_and_next_step_is_empty_when_excluded_or_ineligible():
    q = decide({"email": "x@competitor.example"}, WEBINAR)
    assert not q.qualified and q.definitions_met == (C,) and q.next_step == ""
    q = decide({}, WEBINAR, stage="customer")
    assert not q.qualified and q.next_step == ""
    q = decide({"company": ""}, WEBINAR)
    assert not q.qualified and q.blockers == ("missing company",) and q.next_step == "missing company"
    q = decide({"company": ""}, [])
    assert q.next_step == "Attended a webinar: 1 more webinar attended within 60 days; also missing company"


def test_valid_until_is_when_the_condition_that_holds_leaves_its_window():
    q = decide({}, WEBINAR)
    assert q.valid_until == WEBINAR[0].occurred_at + timedelta(days=60)
    later = qualify(RULES, BASE, "mql", WEBINAR, q.valid_until + timedelta(seconds=1))
    assert not later.qualified and later.nearest == C


# --- today's files: no definitions, decided by the threshold exactly as before --------


def _without_definitions(tmp: Path) -> Path:
    for f in default_dir().glob("*.yaml"):
        text = f.read_text()
        if f.name == "sales_ready.yaml":
            text = text.split("\n# Definitions:")[0] + "\n"
            assert "definitions" not in text
        (tmp / f.name).write_text(text)
    return tmp


OLD = load_mappings(_without_definitions(Path(__import__("tempfile").mkdtemp()))).sales_ready

kinds = st.sampled_from(ACTIVITY_KINDS)
acts = st.lists(
    st.tuples(kinds, st.floats(0, 90), st.sampled_from(["", "TM qualified", "webinar"])), max_size=12
)
people = st.fixed_dictionaries(
    {
        "title": st.sampled_from(["", "VP Sales", "Manager", "Analyst"]),
        "industry": st.sampled_from(["", "COMPUTER_SOFTWARE", "RETAIL"]),
        "company_size": st.sampled_from(["", "10", "300"]),
        "country": st.sampled_from(["", "Canada", "Peru"]),
        "company": st.sampled_from(["", "Acme"]),
    }
)


@settings(max_examples=300, deadline=None)
@given(values=people, raw=acts, stage=st.sampled_from(["lead", "mql", "sql"]))
def test_a_file_without_definitions_decides_by_the_threshold(values, raw, stage):
    activities = [
        Activity("hubspot", str(i), kind, NOW - timedelta(days=d), title=t)
        for i, (kind, d, t) in enumerate(raw)
    ]
    person = {**BASE, **values}
    q = qualify(OLD, person, stage, activities, NOW)
    assert OLD.definitions == ()
    assert q.qualified == (q.score >= OLD.threshold and not q.blockers)
    assert q.definitions_met == (("Score at least 60",) if q.score >= 60 else ())
    if q.score < 60:
        assert q.nearest == "Score at least 60" and q.missing[0].startswith(f"{60 - q.score} more points")
