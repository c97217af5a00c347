"""Build connectors, the state store and the engine from settings and mappings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from connectors.base import Connector
from mappings.models import MappingSet
from sync.engine import Engine
from sync.errors import ConfigError
from sync.settings import Settings
from sync.state import StateStore


def build_connectors(settings: Settings, mapping: MappingSet) -> dict[str, Connector]:
    """The connectors whose settings are present; ConfigError if none or half-set."""
    out: dict[str, Connector] = {}
    if settings.hubspot_enabled:
        if not (settings.hubspot_base_url and settings.hubspot_access_token):
            raise ConfigError("HubSpot: set both HUBSPOT_BASE_URL and HUBSPOT_ACCESS_TOKEN")
        from connectors.hubspot.connector import DEFAULT_EVENT_KINDS, HubSpotConnector, HubSpotSettings

        hs = HubSpotSettings(
            base_url=settings.hubspot_base_url,
            access_token=settings.hubspot_access_token.get_secret_value(),
            event_kinds=settings.event_kinds() or dict(DEFAULT_EVENT_KINDS),
            timeout=settings.hubspot_timeout_seconds,
        )
        props = [f.hubspot for f in mapping.fields.fields if f.hubspot]
        out["hubspot"] = HubSpotConnector(hs, props)
    if settings.salesforce_enabled:
        if not (settings.salesforce_instance_url and settings.salesforce_access_token):
            raise ConfigError("Salesforce: set both SALESFORCE_INSTANCE_URL and SALESFORCE_ACCESS_TOKEN")
        if settings.salesforce_ca_bundle and not settings.salesforce_ca_bundle.exists():
            raise ConfigError(f"SALESFORCE_CA_BUNDLE: no such file {settings.salesforce_ca_bundle}")
        from connectors.salesforce.connector import SalesforceConnector, SalesforceSettings

        sf = SalesforceSettings(
            instance_url=settings.salesforce_instance_url,
            access_token=settings.salesforce_access_token.get_secret_value(),
            ca_bundle=str(settings.salesforce_ca_bundle) if settings.salesforce_ca_bundle else None,
            api_version=settings.salesforce_api_version,
            timeout=settings.salesforce_timeout_seconds,
        )
        leads = [f.salesforce.lead for f in mapping.fields.fields if f.salesforce and f.salesforce.lead]
        contacts = [
            f.salesforce.contact for f in mapping.fields.fields if f.salesforce and f.salesforce.contact
        ]
        out["salesforce"] = SalesforceConnector(sf, leads, contacts)
    if not out:
        raise ConfigError(
            "no CRM configured: set HUBSPOT_BASE_URL + HUBSPOT_ACCESS_TOKEN and/or "
            "SALESFORCE_INSTANCE_URL + SALESFORCE_ACCESS_TOKEN (or run `handoff demo`)"
        )
    return out


def open_state(settings: Settings, read_only: bool = False) -> StateStore:
    """The state store, its schema current; ``read_only`` never creates or migrates anything."""
    url = settings.handoff_state_url
    if read_only and not _state_exists(url):
        store = StateStore("sqlite://")  # nothing recorded yet: an empty, throwaway store
        store.create_schema()
        return store
    store = StateStore(url)
    try:
        _check_schema(store, settings, read_only)
    except BaseException:
        store.close()
        raise
    return store


def _check_schema(store: StateStore, settings: Settings, read_only: bool) -> None:
    """Create a new schema, migrate a behind one (HANDOFF_AUTO_MIGRATE) or refuse."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from sync.migrations import ensure_schema

    try:
        ensure_schema(store.engine, settings.handoff_auto_migrate, read_only=read_only)
    except OperationalError as exc:
        where = make_url(store.url).render_as_string(hide_password=True)
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise ConfigError(f"HANDOFF_STATE_URL: cannot use the state database {where}: {reason}") from None


def _state_exists(url: str) -> bool:
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if not db or db == ":memory:" or not Path(db).exists():
            return False
    store = StateStore(url)
    try:
        return inspect(store.engine).has_table("runs")
    finally:
        store.close()


def build_engine(settings: Settings, mapping: MappingSet, state: StateStore) -> Engine:
    return Engine(
        mapping,
        state,
        build_connectors(settings, mapping),
        lookback=timedelta(seconds=settings.handoff_lookback_seconds),
    )
