"""Read what a live HubSpot portal holds, for ``handoff validate``."""

from __future__ import annotations

from connectors.hubspot.connector import HANDOFF_FIELDS, HubSpotConnector
from crm_handoff.schema import CrmSchema

PICKLISTS = ("lifecyclestage", "hs_lead_status")


def read_schema(conn: HubSpotConnector) -> CrmSchema:
    """Contact and task properties, lifecycle stage and lead status options, active owners."""
    core = conn.client.crm.properties.core_api
    schema = CrmSchema("hubspot")
    for object_type in ("contacts", "tasks"):
        props = conn._call(core.get_all, object_type).results or []
        schema.fields[object_type] = {p.name for p in props}
        for p in props:
            if object_type == "contacts" and p.name in PICKLISTS:
                schema.options[f"contacts.{p.name}"] = {o.value for o in p.options or []}
    schema.active_people.update(o.email for o in conn.pull_owners() if o.active)
    return schema


def own_fields() -> list[str]:
    """Properties ``handoff install`` creates."""
    return list(HANDOFF_FIELDS.values())
