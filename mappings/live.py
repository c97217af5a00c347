"""Checks of a mapping set against what a live CRM actually holds (pure).

Each connector reads its CRM's schema into a ``CrmSchema``; the functions here compare
the mapping with it and return problems as (file, field path, message), which the CLI
prints with the file's line numbers like any other validation error.
"""

from __future__ import annotations

from crm_handoff.schema import CrmSchema
from mappings.models import MappingSet

Problem = tuple[str, tuple[str | int, ...], str]


def _values(schema: CrmSchema, key: str, value: str, file: str, loc: tuple[str | int, ...]) -> list[Problem]:
    known = schema.options.get(key)
    if known is None or value in known:
        return []
    return [
        (
            file,
            loc,
            f"{value!r} is not a {key} value in this {schema.crm} account (it has: {', '.join(sorted(known))})",
        )
    ]


HUBSPOT_PICKLISTS = (
    ("lifecyclestage", "contacts.lifecyclestage"),
    ("lead_status", "contacts.hs_lead_status"),
)
SALESFORCE_PICKLISTS = (("lead_status", "Lead.Status"), ("opportunity_stage", "Opportunity.StageName"))


def _stage_values(
    m: MappingSet, schema: CrmSchema, crm: str, picklists: tuple[tuple[str, str], ...]
) -> list[Problem]:
    """Every CRM value lifecycle.yaml names (in ``stages`` and ``write``) against the picklists."""
    out: list[Problem] = []
    for attr, key in picklists:
        for stage, spec in m.lifecycle.stages.items():
            for i, value in enumerate(getattr(getattr(spec, crm), attr)):
                out += _values(schema, key, value, "lifecycle", ("stages", stage, crm, attr, i))
        for stage, write in m.lifecycle.write.items():
            value = getattr(getattr(write, crm), attr, None)
            if value:
                out += _values(schema, key, value, "lifecycle", ("write", stage, crm, attr))
    return out


def check_hubspot(m: MappingSet, schema: CrmSchema, own_fields: list[str]) -> list[Problem]:
    """Lifecycle stages, lead statuses and properties the mapping names, in a live portal."""
    out = _stage_values(m, schema, "hubspot", HUBSPOT_PICKLISTS)
    contact_fields = schema.fields.get("contacts", set())
    for i, f in enumerate(m.fields.fields):
        if f.hubspot and f.hubspot not in contact_fields:
            message = f"contact property {f.hubspot!r} does not exist in this portal"
            out.append(("fields", ("fields", i, "hubspot"), message))
    for name in own_fields:
        if name not in contact_fields | schema.fields.get("tasks", set()):
            out.append(("handoff", (), f"HubSpot property {name!r} is missing: run `handoff install`"))
    return out + _reps(m, schema, "hubspot")


def check_salesforce(m: MappingSet, schema: CrmSchema, own_fields: dict[str, list[str]]) -> list[Problem]:
    """Lead Status / Opportunity stage values, fields and custom fields, in a live org."""
    out = _stage_values(m, schema, "salesforce", SALESFORCE_PICKLISTS)
    for i, f in enumerate(m.fields.fields):
        for obj in ("lead", "contact"):
            name = f.salesforce_name(obj)
            sobject = obj.capitalize()
            if name and name not in schema.fields.get(sobject, set()):
                out.append(
                    (
                        "fields",
                        ("fields", i, "salesforce", obj),
                        f"{sobject}.{name} does not exist in this org",
                    )
                )
    for sobject, names in own_fields.items():
        for name in names:
            if name not in schema.fields.get(sobject, set()):
                out.append(
                    (
                        "handoff",
                        (),
                        f"Salesforce field {sobject}.{name} is missing: run `handoff install` for instructions",
                    )
                )
    out += _values(schema, "Task.Status", "Not Started", "handoff", ())
    out += _reps(m, schema, "salesforce")
    return out


def _reps(m: MappingSet, schema: CrmSchema, crm: str) -> list[Problem]:
    out: list[Problem] = []
    for i, rep in enumerate(m.reps.reps):
        needs = m.handoff.task_in in (crm, "both") or (m.handoff.task_in == "rep_crm" and rep.works_in == crm)
        if rep.active and needs and rep.email not in schema.active_people:
            out.append(("reps", ("reps", i, "email"), f"no active {crm} user with email {rep.email}"))
    return out
