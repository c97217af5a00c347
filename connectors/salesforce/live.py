"""Read what a live Salesforce org holds, for ``handoff validate``."""

from __future__ import annotations

from typing import Any

from connectors.salesforce.connector import REQUIRED_FIELDS, SalesforceConnector
from crm_handoff.schema import CrmSchema

PICKLISTS = {"Lead": ("Status",), "Opportunity": ("StageName",), "Task": ("Status", "Priority")}


def read_schema(conn: SalesforceConnector) -> CrmSchema:
    """Fields of Lead, Contact, Opportunity and Task, their picklists, active users."""
    schema = CrmSchema("salesforce")
    for obj in ("Lead", "Contact", "Opportunity", "Task"):
        described: dict[str, Any] = conn.describe(obj)
        fields = described.get("fields", [])
        schema.fields[obj] = {f["name"] for f in fields}
        for f in fields:
            if f["name"] in PICKLISTS.get(obj, ()):
                schema.options[f"{obj}.{f['name']}"] = {
                    v["value"] for v in f.get("picklistValues", []) if v.get("active", True)
                }
    schema.active_people.update(o.email for o in conn.pull_owners() if o.active)
    return schema


def own_fields() -> dict[str, list[str]]:
    """Custom fields crm-handoff needs, by object."""
    return {obj: [name for name, _, _ in fields] for obj, fields in REQUIRED_FIELDS.items()}
