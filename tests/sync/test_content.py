"""Content usage from the state: recommendations recorded on the ledger, uses from the
lead's activity after the handoff (``sync.content``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert

from crm_handoff.records import Activity, TaskRequest
from mappings.loader import load_mappings
from sync.content import content_figures
from sync.state import StateStore
from sync.state.tables import identities
from sync.state.types import LedgerEntry

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROI = ("roi-calculator", 1, "https://northwind.example/roi")
PLAN = ("implementation-plan", 1, "https://northwind.example/implementation")


@pytest.fixture
def state(state_url):
    s = StateStore(state_url)
    s.create_schema()
    yield s
    s.close()


def _handoff(state: StateStore, key: str, person: str, crms: tuple[str, ...], content, confirm: bool = True):
    entries = [
        LedgerEntry(
            key=key,
            crm=crm,
            person_key=person,
            episode=1,
            rep_email="sam@northwind.example",
            week_start=date(2026, 3, 2),
            status="intent",
            task_id=None,
            score=70,
            reasons=[],
            planned_at=T0,
            task=TaskRequest(key, f"{crm}-{person}", "contact", "o1", "s", "b", date(2026, 3, 4), "high"),
            content=content,
        )
        for crm in crms
    ]
    state.record_intents(entries, None)
    if confirm:
        state.confirm_many([(key, crm, f"t-{crm}") for crm in crms], T0)


def _click(
    i: int, at: datetime, url: str, email: str | None = None, person_id: str | None = None
) -> Activity:
    return Activity("hubspot", f"em-{i}", "email_click", at, person_id=person_id, email=email, title=url)


def test_a_handoff_in_both_crms_counts_once_and_a_later_click_is_a_use(state):
    with state.engine.begin() as conn:
        conn.execute(
            insert(identities),
            [
                {"person_key": "p1", "hubspot_id": "101", "salesforce_id": "00Q1", "email": "a@x.example"},
                {"person_key": "p2", "hubspot_id": "102", "salesforce_id": None, "email": "b@x.example"},
            ],
        )
    _handoff(state, "p1#1", "p1", ("hubspot", "salesforce"), (ROI, PLAN))
    _handoff(state, "p2#1", "p2", ("hubspot",), (ROI,))
    _handoff(state, "p3#1", "p3", ("hubspot",), (ROI,), confirm=False)  # never written: not recommended
    state.save_activities(
        [
            _click(1, T0 + timedelta(hours=1), "https://northwind.example/roi?utm=1", email="a@x.example"),
            _click(2, T0 + timedelta(hours=2), "https://northwind.example/roi", email="a@x.example"),  # once
            _click(3, T0 - timedelta(hours=1), "https://northwind.example/roi", person_id="102"),  # before
            Activity(
                "salesforce", "t-9", "page_view", T0 + timedelta(days=1), person_id="00Q1", title=PLAN[2]
            ),
        ]
    )
    c = content_figures(state, load_mappings(None))
    rows = {a["id"]: a for a in c["assets"]}
    assert (c["handoffs"], c["recommended"], c["used"]) == (2, 3, 2)
    assert (rows["roi-calculator"]["recommended"], rows["roi-calculator"]["used"]) == (2, 1)
    assert (rows["implementation-plan"]["recommended"], rows["implementation-plan"]["used"]) == (1, 1)
    assert c["never_used"] == []
    assert c["never_recommended"] == ["product-tour", "security-whitepaper", "contoso-story"]


def test_a_reassigned_handoff_is_the_same_handoff(state):
    with state.engine.begin() as conn:
        conn.execute(insert(identities), [{"person_key": "p1", "hubspot_id": "101", "email": "a@x.example"}])
    _handoff(state, "p1#1", "p1", ("hubspot",), (ROI, PLAN))
    _handoff(state, "p1#1.r1", "p1", ("hubspot",), (ROI,))  # the next rep's brief: the same calculator
    state.save_activities([_click(1, T0 + timedelta(days=2), ROI[2], email="a@x.example")])
    c = content_figures(state, load_mappings(None))
    rows = {a["id"]: a for a in c["assets"]}
    assert (c["handoffs"], c["recommended"], c["used"]) == (1, 2, 1)
    assert (rows["roi-calculator"]["recommended"], rows["roi-calculator"]["used"]) == (1, 1)


def test_an_asset_since_removed_from_the_file_is_still_reported(state):
    _handoff(state, "p1#1", "p1", ("hubspot",), (("old-guide", 3, "https://northwind.example/old"),))
    c = content_figures(state, load_mappings(None))
    (row,) = [a for a in c["assets"] if a["id"] == "old-guide"]
    assert row == {
        "id": "old-guide",
        "version": 3,
        "title": "old-guide",
        "gate": "",
        "status": "not in the library",
        "recommended": 1,
        "used": 0,
    }
    assert c["never_used"] == ["old-guide"]


def test_no_handoff_no_figures_but_every_asset_listed(state):
    c = content_figures(state, load_mappings(None))
    assert (c["handoffs"], c["recommended"], c["used"]) == (0, 0, 0)
    assert {a["id"]: a["status"] for a in c["assets"]} == {
        "product-tour": "current",
        "security-whitepaper-2023": "retired",
        "security-whitepaper": "current",
        "contoso-story": "current",
        "roi-calculator": "current",
        "implementation-plan": "current",
    }
