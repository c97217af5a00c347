"""``same_record``: telling the echo of our own write from a change made by someone else."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from crm_handoff.records import Person
from sync.engine import same_record

STAMPS = frozenset({"lastmodifieddate"})
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _mirrored() -> Person:
    return Person(
        crm="hubspot",
        id="7",
        object_type="contact",
        email="kim@globex.example",
        values={"lifecyclestage": "salesqualifiedlead", "lastmodifieddate": "2026-11-02T09:00:00Z"},
        modified_at=T0,
        owner_id="100",
        linked_id="00Q1",
        field_modified_at={},
    )


def test_only_the_stamps_moved_is_an_echo():
    pulled = replace(
        _mirrored(),
        email="Kim@Globex.example",  # CRMs keep the case; the mirror keeps it lower
        values={"lifecyclestage": "salesqualifiedlead", "lastmodifieddate": "2026-11-02T09:05:00Z"},
        modified_at=T0 + timedelta(minutes=5),
    )
    assert same_record(pulled, _mirrored(), STAMPS)


def test_values_the_pull_does_not_read_are_not_compared():
    mirrored = replace(_mirrored(), values={**_mirrored().values, "crm_handoff_reason": "score 80"})
    assert same_record(_mirrored(), mirrored, STAMPS)


def test_a_changed_value_owner_link_or_delete_is_a_change():
    base = _mirrored()
    assert not same_record(replace(base, values={**base.values, "lifecyclestage": "lead"}), base, STAMPS)
    assert not same_record(replace(base, values={**base.values, "jobtitle": "CTO"}), base, STAMPS)
    assert not same_record(replace(base, owner_id="101"), base, STAMPS)
    assert not same_record(replace(base, linked_id=None), base, STAMPS)
    assert not same_record(replace(base, email="kim@initech.example"), base, STAMPS)
    assert not same_record(replace(base, deleted=True), base, STAMPS)
    assert not same_record(replace(base, opportunity_stage="Closed Won"), base, STAMPS)


def test_a_stamp_is_only_ignored_when_declared():
    moved = replace(_mirrored(), values={**_mirrored().values, "lastmodifieddate": "2026-11-02T09:05:00Z"})
    assert not same_record(moved, _mirrored(), frozenset())
