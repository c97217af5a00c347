"""Field sync rules: which value each mapped field takes, and where it is written (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mappings.models import FieldMapping, SyncRule


@dataclass(frozen=True)
class FieldDecision:
    """The value a field takes and the writes it needs (None = no write)."""

    value: str | None
    to_hubspot: str | None = None
    to_salesforce: str | None = None
    clear_hubspot: bool = False
    clear_salesforce: bool = False


def _blank(value: str | None) -> bool:
    return value is None or str(value).strip() == ""


def decide(
    mapping: FieldMapping,
    hubspot: str | None,
    salesforce_raw: str | None,
    last_synced: str | None,
    hubspot_changed_at: datetime | None,
    salesforce_changed_at: datetime | None,
) -> FieldDecision:
    """Apply the field's sync rule to the values of a person known to both CRMs.

    Values are compared in HubSpot terms (``value_map`` translates Salesforce values).
    ``last_synced`` is the value both sides agreed on last time, used by ``two_way``
    to tell which side changed.
    """
    salesforce = mapping.to_hubspot(salesforce_raw)
    hs_blank, sf_blank = _blank(hubspot), _blank(salesforce)
    if hubspot == salesforce or (hs_blank and sf_blank):
        return FieldDecision(value=salesforce if not sf_blank else hubspot)
    rule = mapping.rule
    if rule is SyncRule.DONT_SYNC:
        return FieldDecision(value=salesforce if not sf_blank else hubspot)
    if rule is SyncRule.PREFER_SALESFORCE_UNLESS_BLANK:
        if not sf_blank:
            return FieldDecision(value=salesforce, to_hubspot=salesforce)
        return FieldDecision(value=hubspot, to_salesforce=mapping.to_salesforce(hubspot))
    if rule is SyncRule.ALWAYS_SALESFORCE:
        return _take_salesforce(salesforce, sf_blank)
    if rule is SyncRule.ALWAYS_HUBSPOT:
        return _take_hubspot(mapping, hubspot, hs_blank)
    return _two_way(mapping, hubspot, salesforce, last_synced, hubspot_changed_at, salesforce_changed_at)


def _take_salesforce(salesforce: str | None, sf_blank: bool) -> FieldDecision:
    if sf_blank:
        return FieldDecision(value=None, clear_hubspot=True)
    return FieldDecision(value=salesforce, to_hubspot=salesforce)


def _take_hubspot(mapping: FieldMapping, hubspot: str | None, hs_blank: bool) -> FieldDecision:
    if hs_blank:
        return FieldDecision(value=None, clear_salesforce=True)
    return FieldDecision(value=hubspot, to_salesforce=mapping.to_salesforce(hubspot))


def _two_way(
    mapping: FieldMapping,
    hubspot: str | None,
    salesforce: str | None,
    last: str | None,
    hs_at: datetime | None,
    sf_at: datetime | None,
) -> FieldDecision:
    hs_changed = last is None or hubspot != last
    sf_changed = last is None or salesforce != last
    if hs_changed and not sf_changed:
        winner = "hubspot"
    elif sf_changed and not hs_changed:
        winner = "salesforce"
    else:  # both changed (or never synced): the most recent change wins
        winner = "hubspot" if (hs_at and sf_at and hs_at > sf_at) else "salesforce"
    if winner == "salesforce":
        return _take_salesforce(salesforce, _blank(salesforce))
    return _take_hubspot(mapping, hubspot, _blank(hubspot))
