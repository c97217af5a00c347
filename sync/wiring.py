"""Build connectors, the state store and the engine from settings and mappings."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from connectors.base import Connector
from crm_handoff.clock import Clock, utc_now
from crm_handoff.errors import ConfigError, HandoffError, StateUnavailable
from mappings.models import MappingSet
from sync.engine import Engine
from sync.settings import Settings
from sync.state import StateStore


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value else ""


def build_connectors(settings: Settings, mapping: MappingSet, clock: Clock = utc_now) -> dict[str, Connector]:
    """The connectors whose settings are present; ConfigError if none or half-set."""
    out: dict[str, Connector] = {}
    if settings.hubspot_enabled:
        out["hubspot"] = _hubspot(settings, mapping, clock)
    if settings.salesforce_enabled:
        out["salesforce"] = _salesforce(settings, mapping, clock)
    if not out:
        raise ConfigError(
            "no CRM configured: set HUBSPOT_BASE_URL + HUBSPOT_ACCESS_TOKEN and/or "
            "SALESFORCE_INSTANCE_URL + SALESFORCE_ACCESS_TOKEN (or run `handoff demo`)"
        )
    return out


def _hubspot(settings: Settings, mapping: MappingSet, clock: Clock) -> Connector:
    from connectors.hubspot.auth import HubSpotAuthSettings
    from connectors.hubspot.connector import DEFAULT_EVENT_KINDS, HubSpotConnector, HubSpotSettings

    if not settings.hubspot_base_url:
        raise ConfigError("HubSpot: set HUBSPOT_BASE_URL (https://api.hubapi.com for real HubSpot)")
    auth = HubSpotAuthSettings(
        base_url=settings.hubspot_base_url,
        access_token=_secret(settings.hubspot_access_token),
        client_id=settings.hubspot_client_id or "",
        client_secret=_secret(settings.hubspot_client_secret),
        refresh_token=_secret(settings.hubspot_refresh_token),
        timeout=settings.hubspot_timeout_seconds,
    )
    hs = HubSpotSettings(
        auth=auth,
        event_kinds=settings.event_kinds() or dict(DEFAULT_EVENT_KINDS),
        timeout=settings.hubspot_timeout_seconds,
        api_version=settings.hubspot_api_version,
        activity_late=timedelta(seconds=settings.handoff_activity_late_seconds),
    )
    props = [f.hubspot for f in mapping.fields.fields if f.hubspot]
    props += [  # "Became a ... Date": when a contact entered each stage
        f"hs_lifecyclestage_{v}_date"
        for st in mapping.lifecycle.stages.values()
        for v in st.hubspot.lifecyclestage
    ]
    return HubSpotConnector(hs, props, clock)


def _salesforce(settings: Settings, mapping: MappingSet, clock: Clock) -> Connector:
    from connectors.salesforce.auth import SalesforceAuthSettings
    from connectors.salesforce.connector import SalesforceConnector, SalesforceSettings

    auth = SalesforceAuthSettings(
        login_url=settings.salesforce_login_url or "https://login.salesforce.com",
        access_token=_secret(settings.salesforce_access_token),
        instance_url=settings.salesforce_instance_url or "",
        client_id=settings.salesforce_client_id or "",
        client_secret=_secret(settings.salesforce_client_secret),
        username=settings.salesforce_username or "",
        password=_secret(settings.salesforce_password),
        security_token=_secret(settings.salesforce_security_token),
        private_key=_secret(settings.salesforce_private_key),
        refresh_token=_secret(settings.salesforce_refresh_token),
        ca_bundle=str(settings.salesforce_ca_bundle) if settings.salesforce_ca_bundle else None,
    )
    sf = SalesforceSettings(
        auth=auth,
        api_version=settings.salesforce_api_version,
        timeout=settings.salesforce_timeout_seconds,
        window_lag=settings.salesforce_window_lag_seconds,
        bulk_threshold=settings.salesforce_bulk_threshold,
        budget_run_percent=settings.salesforce_budget_run_percent,
        budget_total_percent=settings.salesforce_budget_total_percent,
    )
    leads = [f.salesforce.lead for f in mapping.fields.fields if f.salesforce and f.salesforce.lead]
    contacts = [f.salesforce.contact for f in mapping.fields.fields if f.salesforce and f.salesforce.contact]
    return SalesforceConnector(sf, leads, contacts, clock)


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
    from sqlalchemy.exc import SQLAlchemyError

    from sync.migrations import ensure_schema

    try:
        ensure_schema(store.engine, settings.handoff_auto_migrate, read_only=read_only)
    except SQLAlchemyError as exc:
        error = state_error(exc, store.url)
        if error is None:
            raise
        raise error from None


#: What the user must fix in HANDOFF_STATE_URL (or the server's set-up), rather than wait out.
_STATE_USER_FIXES = re.compile(
    r"authentication failed|does not exist|no pg_hba\.conf entry|unable to open database file"
    r"|Name or service not known|nodename nor servname|could not translate host name|invalid dsn"
    r"|invalid connection option|permission denied|readonly database",
    re.IGNORECASE,
)


def state_error(exc: BaseException, url: str) -> HandoffError | None:
    """A state-database failure as one line naming HANDOFF_STATE_URL (password hidden): the
    user's to fix (a bad URL, credentials or database: ``ConfigError``, exit 2) or the
    environment's (the server refuses, times out or went away: ``StateUnavailable``, exit 75).
    None when ``exc`` is not a failure to reach or use the database (a bug: let it show)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError

    try:
        parsed = make_url(url)
        where, password = parsed.render_as_string(hide_password=True), parsed.password
    except ArgumentError:
        where, password = "(not a database URL)", None
    if isinstance(exc, ArgumentError):  # a URL SQLAlchemy cannot use (NoSuchModuleError too)
        return ConfigError(f"HANDOFF_STATE_URL: cannot use {where}: {_first_line(exc, password)}")
    if not isinstance(exc, OperationalError | InterfaceError):
        return None
    reason = _first_line(exc.orig or exc, password)
    line = f"HANDOFF_STATE_URL: cannot use the state database {where}: {reason}"
    if _STATE_USER_FIXES.search(reason):
        return ConfigError(line)
    return StateUnavailable(f"{line}; nothing was lost: run again once it answers")


def _first_line(exc: BaseException, secret: str | None) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    return text.replace(secret, "***") if secret else text


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


def build_engine(
    settings: Settings,
    mapping: MappingSet,
    state: StateStore,
    clock: Clock = utc_now,
    fence: Callable[[str], None] | None = None,
) -> Engine:
    """The engine and its connectors, all reading ``clock`` (shifted by ``sync --as-of``);
    with ``fence`` (``handoff run``'s lease check) called before every CRM write batch."""
    connectors = build_connectors(settings, mapping, clock)
    if fence is not None:
        from sync.fence import fenced

        connectors = fenced(connectors, fence)
    return Engine(
        mapping,
        state,
        connectors,
        lookback=timedelta(seconds=settings.handoff_lookback_seconds),
        clock=clock,
        activity_lookback=timedelta(seconds=settings.handoff_activity_lookback_seconds),
        config_path=settings.handoff_config,
    )
