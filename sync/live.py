"""``handoff validate`` against live CRMs: read each CRM's schema, compare, locate lines."""

from __future__ import annotations

from pathlib import Path

from mappings.live import Problem, check_hubspot, check_salesforce
from mappings.loader import locate
from mappings.models import MappingSet
from sync.settings import Settings
from sync.wiring import build_connectors


def check_live(
    settings: Settings, mapping: MappingSet, config: Path | str | None
) -> tuple[list[str], list[str]]:
    """(CRMs checked, one line per problem found)."""
    problems: list[Problem] = []
    connectors = build_connectors(settings, mapping)
    for crm, conn in connectors.items():
        if crm == "hubspot":
            from connectors.hubspot import live as hs

            problems += check_hubspot(mapping, hs.read_schema(conn), hs.own_fields())  # type: ignore[arg-type]
        else:
            from connectors.salesforce import live as sf

            problems += check_salesforce(mapping, sf.read_schema(conn), sf.own_fields())  # type: ignore[arg-type]
    lines = locate(config, problems)
    return sorted(connectors), lines
