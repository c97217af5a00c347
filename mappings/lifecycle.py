"""Translate CRM stage values into the canonical funnel, and back (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from crm_handoff.records import Person
from mappings.models import Lifecycle

UNMAPPED = "unmapped"
#: Salesforce: when the person's opportunity entered its stage, ISO 8601, in the record's
#: values (the connector's ``OPPORTUNITY_STAGE_AT``).
OPPORTUNITY_STAGE_AT = "Opportunity.LastStageChangeDate"


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
    lc: Lifecycle,
    hubspot: str | None,
    salesforce: str | None,
    newest: str | None,
    outcome: bool = False,
) -> str | None:
    """One stage for a person known to both CRMs.

    ``outcome``: the Salesforce stage comes from the person's opportunity, which entered
    it after HubSpot's stage was set; it wins, forward (won: customer) or back (a won deal
    reopened: opportunity). Otherwise a side stage (nurture, disqualified) reported by the
    most recently changed record wins: that is a rep recycling or disqualifying the lead.
    Otherwise the furthest funnel stage wins.
    """
    stages = [s for s in (hubspot, salesforce) if s and s != UNMAPPED]
    if not stages:
        return hubspot or salesforce
    if outcome and salesforce and salesforce != UNMAPPED:
        return salesforce
    if newest in lc.side_stages:
        return newest
    funnel = [s for s in stages if s in lc.funnel]
    if funnel:
        return max(funnel, key=lambda s: lc.funnel.index(s))
    return stages[0]


def person_stages(
    lc: Lifecycle, hubspot: Person | None, salesforce: Person | None
) -> tuple[str | None, str | None, str | None]:
    """(the HubSpot record's stage, the Salesforce record's, the person's) for one person."""
    hs = person_stage(lc, hubspot) if hubspot else None
    sf = person_stage(lc, salesforce) if salesforce else None
    if hubspot is None or salesforce is None:
        return hs, sf, merged_stage(lc, hs, sf, None)
    newest = hs if hubspot.modified_at > salesforce.modified_at else sf
    moved = outcome_at(salesforce)  # whole seconds, as Salesforce keeps them: a tie goes to it
    outcome = moved is not None and moved >= hubspot_stage_at(lc, hubspot).replace(microsecond=0)
    return hs, sf, merged_stage(lc, hs, sf, newest, outcome)


def outcome_at(person: Person) -> datetime | None:
    """When a Salesforce person's opportunity entered its stage; None without one."""
    return _time(person.values.get(OPPORTUNITY_STAGE_AT)) if person.opportunity_stage else None


def hubspot_stage_at(lc: Lifecycle, person: Person) -> datetime:
    """When a HubSpot contact's stage was set: ``hs_lifecyclestage_<stage>_date`` when the
    stage comes from its lifecyclestage, else the record's last change."""
    lifecyclestage = person.values.get("lifecyclestage")
    at = _time(person.values.get(f"hs_lifecyclestage_{lifecyclestage}_date")) if lifecyclestage else None
    if at is not None and hubspot_stage(lc, lifecyclestage, None) == person_stage(lc, person):
        return at
    return person.modified_at


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


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
