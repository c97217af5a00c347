"""Outside work added to each rep's used capacity: one ``open_work`` read per CRM, none when off."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.base import ANY_TYPE, OpenWork
from mappings.models import OutsideWork, Rep, Reps
from sync.outside import add_outside_work


class FakeCrm:
    """Answers ``open_work`` from a table of open items per owner id, and records what it was asked."""

    def __init__(self, items: Mapping[str, int]) -> None:
        self.items = items
        self.asked: list[dict[str, OpenWork]] = []

    def open_work(self, wanted: Mapping[str, OpenWork]) -> dict[str, int]:
        self.asked.append(dict(wanted))
        return {owner: self.items.get(owner, 0) for owner in wanted}


def rep(email: str, works_in: str = "salesforce", **kw) -> Rep:
    return Rep(
        name=email, email=email, works_in=works_in, weekly_followup_minutes=120, minutes_per_lead=20, **kw
    )


OWNERS = {
    "salesforce": {"dana@x.io": "005D", "lee@x.io": "005L", "sam@x.io": "005S"},
    "hubspot": {"sam@x.io": "7", "dana@x.io": "9"},
}


def owner_ids(crm: str) -> dict[str, str]:
    return OWNERS.get(crm, {})


def test_off_by_default_asks_nothing_and_changes_nothing():
    sf, hs = FakeCrm({"005D": 6}), FakeCrm({"7": 6})
    used = add_outside_work(
        {"dana@x.io": 2}, Reps(reps=(rep("dana@x.io"),)), {"salesforce": sf, "hubspot": hs}, owner_ids
    )
    assert used == {"dana@x.io": 2} and sf.asked == [] and hs.asked == []


def test_one_read_per_crm_for_all_reps_summed_over_both_crms():
    outside = OutsideWork.model_validate(
        {
            "salesforce": {"task_types": ["Call"], "lead_statuses": ["Working"]},
            "hubspot": {"task_types": "any"},
        }
    )
    reps = Reps(
        reps=(
            rep("dana@x.io"),
            rep("lee@x.io", outside_work=OutsideWork()),  # his own block: nothing counts
            rep("sam@x.io", "hubspot"),
            rep("jo@x.io", active=False),
        ),
        outside_work=outside,
    )
    sf, hs = FakeCrm({"005D": 2, "005L": 5, "005S": 1}), FakeCrm({"7": 3, "9": 1})
    used = add_outside_work({"dana@x.io": 1}, reps, {"salesforce": sf, "hubspot": hs}, owner_ids)
    assert used == {"dana@x.io": 1 + 2 + 1, "sam@x.io": 1 + 3}  # Lee: nothing counts, not asked
    assert len(sf.asked) == 1 and len(hs.asked) == 1
    assert sf.asked[0] == {
        "005D": OpenWork(("Call",), ("Working",), 6),
        "005S": OpenWork(("Call",), ("Working",), 6),
    }
    assert hs.asked[0] == {"9": OpenWork((ANY_TYPE,), (), 6), "7": OpenWork((ANY_TYPE,), (), 6)}


def test_minutes_each_converts_items_to_leads_and_bounds_the_count():
    outside = OutsideWork.model_validate({"salesforce": {"task_types": "any"}, "minutes_each": 30})
    reps = Reps(reps=(rep("dana@x.io"),), outside_work=outside)
    sf = FakeCrm({"005D": 3})  # 90 of 120 minutes: 30 left, one lead: 5 of 6 used
    assert add_outside_work({}, reps, {"salesforce": sf}, owner_ids) == {"dana@x.io": 5}
    assert sf.asked[0]["005D"].up_to == 4  # 4 x 30 = 120: past that nothing changes
