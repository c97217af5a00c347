"""``handoff install``: make each CRM ready for crm-handoff's fields."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.base import Connector


def install(connectors: Mapping[str, Connector]) -> dict[str, list[str]]:
    """Run each connector's installer; returns what each one did or found."""
    out: dict[str, list[str]] = {}
    for crm, conn in connectors.items():
        if crm == "hubspot":
            from connectors.hubspot.connector import HubSpotConnector
            from connectors.hubspot.connector import install as hs_install

            assert isinstance(conn, HubSpotConnector)
            out[crm] = hs_install(conn)
        else:
            from connectors.salesforce.connector import SalesforceConnector
            from connectors.salesforce.connector import install as sf_install

            assert isinstance(conn, SalesforceConnector)
            out[crm] = sf_install(conn)
    return out
