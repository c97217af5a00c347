"""``handoff install``: make each CRM ready for crm-handoff's fields."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.base import Connector
from mappings.models import MappingSet


def install(connectors: Mapping[str, Connector], mapping: MappingSet | None = None) -> dict[str, list[str]]:
    """Run each connector's installer (``Connector.install``), with the outcome picklist of
    ``handoff.yaml outcomes`` when it lists choices; returns what each did or found."""
    choices = mapping.handoff.outcomes.choices if mapping is not None else ()
    values = [(c.value, c.display) for c in choices]
    return {crm: conn.install(values) for crm, conn in connectors.items()}
