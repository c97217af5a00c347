"""The brief names the sales-ready definitions a person met (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm_handoff.records import Activity
from mappings.context import rep_view
from mappings.loader import load_mappings
from sync.brief import build_brief
from sync.qualify import qualify

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
M = load_mappings()
PERSON = {
    "email": "ana@acme.io",
    "first_name": "Ana",
    "last_name": "Ruiz",
    "company": "Acme",
    "title": "VP Ops",
}


def brief(q, definitions):
    return build_brief(
        M.handoff,
        M.sales_ready.threshold,
        PERSON,
        "mql",
        q.score,
        q.reasons,
        [],
        rep_view(M.reps.reps[0]),
        NOW,
        definitions,
    )


def test_the_body_starts_with_the_definitions_met_and_what_made_them_hold():
    acts = [Activity("hubspot", f"d{i}", "content_download", NOW - timedelta(days=2)) for i in range(3)]
    acts.append(Activity("hubspot", "w", "webinar_attended", NOW - timedelta(days=9)))
    q = qualify(M.sales_ready, PERSON, "mql", acts, NOW)
    body = brief(q, q.met_details).body
    assert body.startswith(
        "Sales-ready by definitions:\n"
        "- Downloads with a senior title: 3 x content download in 30 days; Senior title (title 'VP Ops')\n"
        "- Attended a webinar: 1 x webinar attended in 60 days\n\n"
        "Ana Ruiz, VP Ops at Acme is sales-ready"
    )


def test_without_definitions_the_body_is_the_template_alone():
    q = qualify(M.sales_ready, PERSON, "mql", [], NOW)
    body = brief(q, ()).body
    assert body.startswith("Ana Ruiz, VP Ops at Acme is sales-ready") and "definition" not in body
