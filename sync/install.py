"""``handoff install``: make each CRM ready for crm-handoff's fields."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.base import Connector


def install(connectors: Mapping[str, Connector]) -> dict[str, list[str]]:
    """Run each connector's installer (``Connector.install``); returns what each did or found."""
    return {crm: conn.install() for crm, conn in connectors.items()}
