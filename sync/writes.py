"""The field values the cycle writes on people, built (pure); ``sync.execute`` sends them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.base import Connector
from crm_handoff.records import Person
from mappings.lifecycle import funnel_rank, hubspot_stage, may_move
from mappings.models import MappingSet

STATUS_HANDED_OFF = "handed off"
STATUS_WAITING = "waiting: rep capacity"
STATUS_NO_REP = "waiting: no eligible rep"
STATUS_SET_ASIDE = "set aside"
STATUS_LAPSED = "no longer sales-ready"
STATUS_RETURNED = "back in nurture"


@dataclass
class Writes:
    """Field writes gathered per CRM record, sent as one batch per CRM."""

    values: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    clear_first: set[tuple[str, str, str]] = field(default_factory=set)

    def put(self, crm: str, person_id: str, object_type: str, values: dict[str, Any]) -> None:
        """Add values to write on one record (merged with those already gathered)."""
        if values:
            self.values.setdefault((crm, person_id, object_type), {}).update(values)


def stage_values(
    mapping: MappingSet, crm: str, person: Person, current: str | None, target: str, writes: Writes
) -> dict[str, Any]:
    """Values that move ``person`` to canonical ``target`` in its CRM, if allowed."""
    lc = mapping.lifecycle
    spec = lc.write.get(target)
    if spec is None or not may_move(lc, current, target):
        return {}
    if crm == "hubspot":
        out: dict[str, Any] = {}
        if spec.hubspot.lifecyclestage and spec.hubspot.lifecyclestage != person.values.get("lifecyclestage"):
            out["lifecyclestage"] = spec.hubspot.lifecyclestage
            now_stage = hubspot_stage(lc, person.values.get("lifecyclestage"), None)
            if funnel_rank(lc, hubspot_stage(lc, spec.hubspot.lifecyclestage, None)) < funnel_rank(
                lc, now_stage
            ):
                writes.clear_first.add((crm, person.id, person.object_type))
        if spec.hubspot.lead_status and spec.hubspot.lead_status != person.values.get("hs_lead_status"):
            out["hs_lead_status"] = spec.hubspot.lead_status
        return out
    if person.object_type != "lead" or person.converted_to or not spec.salesforce.lead_status:
        return {}
    if person.values.get("Status") == spec.salesforce.lead_status:
        return {}
    return {"Status": spec.salesforce.lead_status}


def handoff_values(
    conn: Connector, status: str, reason: str, score: int, rep: str, at: datetime
) -> dict[str, Any]:
    """crm-handoff's own fields on a person: status, reason, score, rep (and date)."""
    f = conn.handoff_fields
    values: dict[str, Any] = {
        f["status"]: status,
        f["reason"]: reason[:1000],
        f["score"]: score,
        f["rep"]: rep,
    }
    if "date" in f:
        values[f["date"]] = at.date().isoformat()
    return values
