"""``handoff validate`` against live CRMs: read each CRM's schema, compare, locate lines."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from connectors.base import Connector
from mappings.live import Problem, check_hubspot, check_salesforce
from mappings.loader import locate
from mappings.models import MappingSet
from sync.settings import Settings
from sync.wiring import build_connectors


def read_problems(mapping: MappingSet, connectors: Mapping[str, Connector]) -> list[Problem]:
    """Every problem of the mapping against each connected CRM's live schema."""
    problems: list[Problem] = []
    for crm, conn in connectors.items():
        if crm == "hubspot":
            from connectors.hubspot import live as hs

            problems += check_hubspot(mapping, hs.read_schema(conn), hs.own_fields())  # type: ignore[arg-type]
        else:
            from connectors.salesforce import live as sf

            problems += check_salesforce(mapping, sf.read_schema(conn), sf.own_fields())  # type: ignore[arg-type]
    return problems


def check_live(
    settings: Settings, mapping: MappingSet, config: Path | str | None
) -> tuple[list[str], list[str]]:
    """(CRMs checked, one line per problem found)."""
    connectors = build_connectors(settings, mapping)
    lines = locate(config, read_problems(mapping, connectors))
    return sorted(connectors), lines
