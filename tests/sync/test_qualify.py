"""Sales-ready scoring (pure): explainable points, thresholds, blockers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm_handoff.records import Activity
from mappings.loader import load_mappings
from sync.qualify import qualify

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
RULES = load_mappings().sales_ready
FIT = {
    "email": "a@b.io",
    "last_name": "Li",
    "company": "Acme",
    "title": "VP Sales",
    "industry": "COMPUTER_SOFTWARE",
    "company_size": "250",
    "country": "Canada",
}


def act(kind: str, days_ago: float, n: int = 1) -> list[Activity]:
    return [
        Activity("hubspot", f"{kind}{days_ago}{i}", kind, NOW - timedelta(days=days_ago)) for i in range(n)
    ]


def test_fit_alone_is_not_enough():
    q = qualify(RULES, FIT, "mql", [], NOW)
    assert q.score == 45 and not q.qualified
    assert [r.rule for r in q.reasons] == [
        "Senior title",
        "Target industry",
        "Company size 50-5000",
        "Served country",
    ]


def test_fit_plus_behaviour_qualifies_with_reasons():
    q = qualify(RULES, FIT, "mql", act("form_fill", 3) + act("content_download", 10, 2), NOW)
    assert q.qualified and q.score == 80
    detail = {r.rule: r.detail for r in q.reasons}
    assert detail["Downloaded content"] == "2 x content download in 30 days"


def test_recency_window_excludes_old_activity():
    q = qualify(RULES, FIT, "mql", act("form_fill", 31), NOW)
    assert "Requested a demo or contact" not in {r.rule for r in q.reasons}


def test_blockers_missing_field_excluded_and_stage():
    acts = act("meeting", 1) + act("form_fill", 1)
    assert qualify(RULES, {**FIT, "company": ""}, "mql", acts, NOW).blockers == ("missing company",)
    assert not qualify(RULES, {**FIT, "email": "x@competitor.example"}, "mql", acts, NOW).qualified
    assert qualify(RULES, FIT, "sql", acts, NOW).blockers == ("stage sql is not eligible",)
