"""``handoff report``'s numbers come only from recorded stage entries: nothing inferred."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mappings.loader import load_mappings
from sync.report import REACHED_BASIS, print_report, report_data
from sync.state import StateStore, stage_history

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def state(state_url):
    s = StateStore(state_url)
    s.create_schema()
    yield s
    s.close()


def _conversion(data, a: str, b: str) -> dict:
    (row,) = [c for c in data["conversion"] if (c["from"], c["to"]) == (a, b)]
    return row


def test_a_person_first_seen_at_a_later_stage_reached_only_that_stage(state):
    # a customer the first cycle sees (HubSpot's stage date), never an opportunity in our records
    state.record_stages({"p1": "customer"}, T0, {"p1": T0 - timedelta(days=30)})
    state.record_stages({"p2": "mql"}, T0)
    state.record_stages({"p2": "sql"}, T0 + timedelta(hours=1))  # a handoff seen by a cycle
    with state.engine.connect() as conn:  # only the stages seen are written: no earlier ones
        assert conn.execute(select(func.count()).select_from(stage_history)).scalar() == 3

    data = report_data(state, load_mappings(None))
    assert data["reached"] == {
        "subscriber": 0,
        "lead": 0,
        "mql": 1,
        "sql": 1,
        "opportunity": 0,
        "customer": 1,
        "nurture": 0,
        "disqualified": 0,
    }
    assert _conversion(data, "opportunity", "customer") == {
        "from": "opportunity",
        "to": "customer",
        "reached_from": 0,
        "reached_to": 0,
        "rate": None,  # nobody was ever recorded as an opportunity: no rate, not 100%
    }
    assert _conversion(data, "mql", "sql")["rate"] == 1.0
    assert _conversion(data, "subscriber", "lead")["reached_from"] == 0
    assert data["basis"] == REACHED_BASIS and "recorded" in data["basis"]
    assert data["current"]["customer"] == 1 and data["current"]["sql"] == 1


def test_conversion_counts_the_later_stage_only_when_entered_at_or_after_the_earlier(state):
    state.record_stages({"a": "lead", "b": "lead", "c": "lead"}, T0)
    state.record_stages({"a": "mql"}, T0 + timedelta(days=1))  # after: converted
    state.record_stages({"b": "mql"}, T0)  # the same moment: converted
    state.record_stages({"d": "mql"}, T0 + timedelta(days=1))  # mql, never a lead: not in lead -> mql
    state.record_stages({"e": "mql"}, T0, {"e": T0 - timedelta(days=9)})
    state.record_stages({"e": "lead"}, T0 + timedelta(days=2))  # moved back to lead later: no conversion
    state.record_stages({"a": "lead"}, T0 + timedelta(days=3))  # back to lead: still its first entry

    data = report_data(state, load_mappings(None))
    row = _conversion(data, "lead", "mql")
    assert (row["reached_from"], row["reached_to"], row["rate"]) == (4, 2, 0.5)
    assert data["reached"]["mql"] == 4 and data["current"] == {**data["current"], "lead": 3, "mql": 2}


def test_printed_report_names_the_state_and_what_reached_means(state, capsys):
    state.record_stages({"p1": "customer"}, T0)
    data = {"state": "sqlite:///x.db", **report_data(state, load_mappings(None))}
    print_report(data)
    out = capsys.readouterr().out
    assert out.startswith("state: sqlite:///x.db\n")
    assert "opportunity -> customer  0             0                -" in out
    assert "counts as reached only when crm-handoff recorded the person entering it" in " ".join(out.split())
    json.dumps(data)  # --json prints the same dictionary
