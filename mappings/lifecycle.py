"""Translate CRM stage values into the canonical funnel, and back (pure)."""

from __future__ import annotations

from crm_handoff.records import Person
from mappings.models import Lifecycle

UNMAPPED = "unmapped"


def _search_order(lc: Lifecycle) -> list[str]:
    """Side stages first, then the funnel from its far end: the furthest match wins."""
    return list(lc.side_stages) + list(reversed(lc.funnel))


def hubspot_stage(lc: Lifecycle, lifecyclestage: str | None, lead_status: str | None) -> str | None:
    """Canonical stage of a HubSpot contact; None when neither value is set."""
    if not lifecyclestage and not lead_status:
        return None
    for name in _search_order(lc):
        match = lc.stages[name].hubspot
        if (lifecyclestage and lifecyclestage in match.lifecyclestage) or (
            lead_status and lead_status in match.lead_status
        ):
            return name
    return UNMAPPED


def salesforce_stage(
    lc: Lifecycle, object_type: str, lead_status: str | None, opportunity_stage: str | None
) -> str | None:
    """Canonical stage of a Salesforce lead or contact."""
    if opportunity_stage:
        for name in _search_order(lc):
            if opportunity_stage in lc.stages[name].salesforce.opportunity_stage:
                return name
        return UNMAPPED
    if object_type == "contact":
        return lc.salesforce_contact_default
    if not lead_status:
        return None
    for name in _search_order(lc):
        if lead_status in lc.stages[name].salesforce.lead_status:
            return name
    return UNMAPPED


def person_stage(lc: Lifecycle, person: Person) -> str | None:
    """Canonical stage of one CRM record."""
    if person.crm == "hubspot":
        return hubspot_stage(lc, person.values.get("lifecyclestage"), person.values.get("hs_lead_status"))
    return salesforce_stage(lc, person.object_type, person.values.get("Status"), person.opportunity_stage)


def funnel_rank(lc: Lifecycle, stage: str | None) -> int:
    """Position in the funnel; side stages rank just above lead, unknown below all."""
    if stage in lc.funnel:
        return lc.funnel.index(stage)
    if stage in lc.side_stages:
        return lc.funnel.index("lead") if "lead" in lc.funnel else 0
    return -1


def merged_stage(
    lc: Lifecycle, hubspot: str | None, salesforce: str | None, newest: str | None
) -> str | None:
    """One stage for a person known to both CRMs.

    A side stage (nurture, disqualified) reported by the most recently changed record
    wins: that is a rep recycling or disqualifying the lead. Otherwise the furthest
    funnel stage wins.
    """
    stages = [s for s in (hubspot, salesforce) if s and s != UNMAPPED]
    if not stages:
        return hubspot or salesforce
    if newest in lc.side_stages:
        return newest
    funnel = [s for s in stages if s in lc.funnel]
    if funnel:
        return max(funnel, key=lambda s: lc.funnel.index(s))
    return stages[0]


def is_backward(lc: Lifecycle, current: str | None, target: str) -> bool:
    """True when moving from ``current`` to ``target`` goes back in the funnel."""
    return funnel_rank(lc, target) < funnel_rank(lc, current)


def may_move(lc: Lifecycle, current: str | None, target: str) -> bool:
    """Forward moves are always allowed; backward only where the mapping allows it."""
    if current == target:
        return False
    if not is_backward(lc, current, target) or current is None:
        return True
    return (current, target) in lc.allow_backward
