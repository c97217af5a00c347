"""Field sync rules (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from mappings.models import FieldMapping, SyncRule
from sync.fieldsync import decide

T0, T1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def fm(rule: SyncRule, **kw) -> FieldMapping:
    return FieldMapping(name="title", hubspot="jobtitle", salesforce="Title", rule=rule, **kw)


def test_two_way_side_that_changed_wins():
    d = decide(
        fm(SyncRule.TWO_WAY),
        "CTO",
        "VP Eng",
        last_synced="CTO",
        hubspot_changed_at=T1,
        salesforce_changed_at=T0,
    )
    assert d.value == "VP Eng" and d.to_hubspot == "VP Eng" and d.to_salesforce is None
    d = decide(
        fm(SyncRule.TWO_WAY),
        "CEO",
        "VP Eng",
        last_synced="VP Eng",
        hubspot_changed_at=T0,
        salesforce_changed_at=T1,
    )
    assert d.value == "CEO" and d.to_salesforce == "CEO"


def test_two_way_both_changed_most_recent_wins():
    d = decide(
        fm(SyncRule.TWO_WAY), "A", "B", last_synced="C", hubspot_changed_at=T1, salesforce_changed_at=T0
    )
    assert d.to_salesforce == "A"


def test_always_hubspot_never_writes_hubspot():
    d = decide(fm(SyncRule.ALWAYS_HUBSPOT), "CTO", "VP Eng", "CTO", T0, T1)
    assert d.value == "CTO" and d.to_hubspot is None and d.to_salesforce == "CTO"


def test_prefer_salesforce_unless_blank_and_value_map():
    m = fm(SyncRule.PREFER_SALESFORCE_UNLESS_BLANK, value_map={"COMPUTER_SOFTWARE": "Technology"})
    assert (
        decide(m, "COMPUTER_SOFTWARE", "Technology", None, T0, T0).to_hubspot is None
    )  # equal after mapping
    assert decide(m, "COMPUTER_SOFTWARE", None, None, T0, T0).to_salesforce == "Technology"
    assert decide(m, "RETAIL", "Technology", None, T0, T0).to_hubspot == "COMPUTER_SOFTWARE"


def test_dont_sync_writes_nothing():
    d = decide(fm(SyncRule.DONT_SYNC), "A", "B", None, T0, T1)
    assert d.to_hubspot is None and d.to_salesforce is None
