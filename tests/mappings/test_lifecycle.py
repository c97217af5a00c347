"""Stage mapping (pure): CRM values to the canonical funnel and back."""

from __future__ import annotations

from mappings.lifecycle import UNMAPPED, hubspot_stage, may_move, merged_stage, salesforce_stage
from mappings.loader import load_mappings

LC = load_mappings().lifecycle


def test_hubspot_values():
    assert hubspot_stage(LC, "marketingqualifiedlead", None) == "mql"
    assert hubspot_stage(LC, "lead", "OPEN_DEAL") == "opportunity"  # furthest match wins
    assert hubspot_stage(LC, "salesqualifiedlead", "BAD_TIMING") == "nurture"  # side stage first
    assert hubspot_stage(LC, "madeup", None) == UNMAPPED
    assert hubspot_stage(LC, None, None) is None


def test_salesforce_values():
    assert salesforce_stage(LC, "lead", "Marketing Qualified", None) == "mql"
    assert salesforce_stage(LC, "lead", "Closed - Converted", "Closed Won") == "customer"
    assert salesforce_stage(LC, "contact", None, None) == "sql"


def test_merge_and_moves():
    assert merged_stage(LC, "mql", "sql", newest="mql") == "sql"
    assert merged_stage(LC, "sql", "nurture", newest="nurture") == "nurture"
    assert may_move(LC, "mql", "sql")
    assert not may_move(LC, "sql", "mql")
    assert may_move(LC, "sql", "nurture")  # allowed in allow_backward
