"""Settings from the environment (12-factor), validated by pydantic-settings.

Secrets come only from the environment or from files: every secret ``X`` can also be
given as ``X_FILE`` (a path, e.g. a mounted Kubernetes Secret). Secret values are
``SecretStr`` so they never print in logs, errors or ``repr``.

Every setting is checked when the settings load, whatever the command: URLs are http(s)
URLs, the state URL names an installed, known database driver, files exist, numbers are
in range, ``HUBSPOT_EVENT_KINDS`` maps to real activity kinds. Each problem is one line
naming the variable (exit 2); a secret's value is never echoed.
"""

from __future__ import annotations

import json
import os
import re
import ssl
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crm_handoff.errors import ConfigError
from crm_handoff.records import ACTIVITY_KINDS

SECRETS = (
    "HUBSPOT_ACCESS_TOKEN",
    "SALESFORCE_ACCESS_TOKEN",
    # auth
    "SALESFORCE_CLIENT_SECRET",
    "SALESFORCE_PASSWORD",
    "SALESFORCE_SECURITY_TOKEN",
    "SALESFORCE_PRIVATE_KEY",
    "SALESFORCE_REFRESH_TOKEN",
    "HUBSPOT_CLIENT_SECRET",
    "HUBSPOT_REFRESH_TOKEN",
    # webhooks
    "HUBSPOT_WEBHOOK_CLIENT_SECRET",
    # notifications
    "HANDOFF_SMTP_PASSWORD",
)


class Settings(BaseSettings):
    """Every setting of crm-handoff; see the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    handoff_config: Path | None = Field(None, description="Mapping directory or combined file")
    handoff_state_url: str = Field(
        "sqlite:///handoff-state.db", description="SQLAlchemy URL of the state store"
    )
    handoff_log_format: Literal["console", "json"] = "console"
    handoff_log_level: Literal["debug", "info", "warning", "error"] = "info"
    handoff_lookback_seconds: int = Field(60, ge=0, le=86_400)
    handoff_activity_lookback_seconds: int = Field(300, ge=0, le=86_400)
    handoff_activity_late_seconds: int = Field(
        86_400, ge=0, le=604_800, description="HubSpot events counted up to this long after they occurred"
    )

    hubspot_base_url: str | None = None
    hubspot_access_token: SecretStr | None = None
    hubspot_event_kinds: str | None = Field(None, description="JSON object: event type -> activity kind")
    hubspot_timeout_seconds: float = Field(60.0, gt=0, le=3_600)
    hubspot_api_version: str = Field(
        "v3",
        pattern=r"^(v3|\d{4}-\d{2})$",
        description="v3 (what the SDK calls) or a date version, e.g. 2026-03",
    )

    salesforce_instance_url: str | None = None
    salesforce_access_token: SecretStr | None = None
    salesforce_ca_bundle: Path | None = None
    salesforce_api_version: str = "62.0"
    salesforce_timeout_seconds: float = Field(60.0, gt=0, le=3_600)
    salesforce_budget_run_percent: float = Field(
        25.0, gt=0, le=100, description="share of the daily API allocation one run may use"
    )
    salesforce_budget_total_percent: float = Field(
        80.0, gt=0, le=100, description="stop when the org has used this share"
    )
    salesforce_bulk_threshold: int = Field(
        10_000,
        ge=0,
        le=100_000_000,
        description="a first sync of more records than this per object uses Bulk API 2.0",
    )
    salesforce_window_lag_seconds: float = Field(
        2.0, ge=0, le=3600, description="pull windows end this far behind now"
    )

    @field_validator("salesforce_api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.removeprefix("v")
        if not re.fullmatch(r"\d{2,3}\.\d", value):
            raise ValueError("expected a version like 62.0")
        return value

    @field_validator("handoff_log_format", "handoff_log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("hubspot_base_url", "salesforce_instance_url", "salesforce_login_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_url(value) if value else None

    @field_validator("hubspot_event_kinds")
    @classmethod
    def _event_kinds(cls, value: str | None) -> str | None:
        if value and value.strip():
            parse_event_kinds(value)
            return value
        return None

    @field_validator("handoff_state_url")
    @classmethod
    def _state_url(cls, value: str) -> str:
        check_state_url(value)
        return value

    @field_validator("salesforce_ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_ca_bundle(value)
        return value

    @field_validator("handoff_config", "handoff_schedule_file", "salesforce_ca_bundle", mode="before")
    @classmethod
    def _blank_path(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("handoff_config", "handoff_schedule_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.exists():
            raise ValueError(f"no such file or directory: {value}")
        return value

    @field_validator(
        "hubspot_access_token",
        "salesforce_access_token",
        "salesforce_client_secret",
        "salesforce_security_token",
        "salesforce_refresh_token",
        "hubspot_client_secret",
        "hubspot_refresh_token",
        "hubspot_webhook_client_secret",
    )
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and re.search(r"\s", value.get_secret_value()):
            raise ValueError("contains whitespace (a pasted line break or space?)")
        return value

    @field_validator("handoff_metrics_host", "salesforce_client_id", "hubspot_client_id")
    @classmethod
    def _no_space(cls, value: str | None) -> str | None:
        if value and re.search(r"\s", value):
            raise ValueError("must be one word, without spaces")
        return value

    def event_kinds(self) -> dict[str, str] | None:
        """``HUBSPOT_EVENT_KINDS`` as event type -> activity kind (None when not set)."""
        return parse_event_kinds(self.hubspot_event_kinds) if self.hubspot_event_kinds else None

    @property
    def hubspot_enabled(self) -> bool:
        return bool(
            self.hubspot_base_url
            or self.hubspot_access_token
            or self.hubspot_client_id
            or self.hubspot_client_secret
            or self.hubspot_refresh_token
        )

    @property
    def salesforce_enabled(self) -> bool:
        return bool(
            self.salesforce_instance_url
            or self.salesforce_access_token
            or self.salesforce_login_url
            or self.salesforce_client_id
            or self.salesforce_client_secret
            or self.salesforce_username
            or self.salesforce_password
            or self.salesforce_security_token
            or self.salesforce_private_key
            or self.salesforce_refresh_token
        )

    # --- auth ---
    salesforce_login_url: str | None = Field(
        None,
        description="OAuth token host (default https://login.salesforce.com; My Domain or test.salesforce.com)",
    )
    salesforce_client_id: str | None = Field(None, description="Connected / External Client App consumer key")
    salesforce_client_secret: SecretStr | None = None
    salesforce_username: str | None = Field(
        None, description="JWT bearer subject or legacy password-flow user"
    )
    salesforce_password: SecretStr | None = None
    salesforce_security_token: SecretStr | None = None
    salesforce_private_key: SecretStr | None = Field(None, description="PEM RSA key for the JWT bearer flow")
    salesforce_refresh_token: SecretStr | None = None
    hubspot_client_id: str | None = None
    hubspot_client_secret: SecretStr | None = None
    hubspot_refresh_token: SecretStr | None = None

    # --- worker ---
    handoff_auto_migrate: bool = Field(True, description="Apply pending state migrations on start")
    handoff_sync_interval_seconds: int = Field(300, ge=1, le=86_400)
    handoff_schedule_file: Path | None = Field(None, description="YAML schedule: interval/cron per job")
    handoff_metrics_host: str = "0.0.0.0"
    handoff_metrics_port: int = Field(9102, ge=0, le=65_535, description="0 disables /metrics, /healthz")
    handoff_lease_ttl_seconds: float = Field(30.0, ge=1, le=3_600)
    handoff_misfire_grace_seconds: int = Field(60, ge=1, le=86_400)
    handoff_stop_timeout_seconds: float = Field(20.0, gt=0, le=3_600)
    handoff_worker_id: str | None = Field(None, description="Lease holder name (default host:pid)")

    # --- webhooks ---
    hubspot_webhook_client_secret: SecretStr | None = Field(
        None,
        description="client secret of the app HubSpot signs deliveries with (default HUBSPOT_CLIENT_SECRET)",
    )
    hubspot_webhook_url: str | None = Field(
        None,
        description="the public URL HubSpot delivers webhooks to (the app's target URL); set: webhooks on",
    )
    handoff_webhook_delay_seconds: float = Field(
        0.5, ge=0, le=60, description="a micro-cycle starts this long after a delivery (deliveries gather)"
    )
    handoff_webhook_poll_seconds: float = Field(
        5.0, gt=0, le=3_600, description="how often the worker looks for deliveries another replica stored"
    )

    @field_validator("hubspot_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value or not value.strip():
            return None
        if not (info.data.get("hubspot_webhook_client_secret") or info.data.get("hubspot_client_secret")):
            raise ValueError(
                "webhooks need the app's client secret to check signatures: "
                "set HUBSPOT_WEBHOOK_CLIENT_SECRET (or HUBSPOT_CLIENT_SECRET)"
            )
        return check_webhook_url(value)

    @property
    def webhooks_enabled(self) -> bool:
        """Whether the worker receives HubSpot webhooks (``HUBSPOT_WEBHOOK_URL`` set)."""
        return bool(self.hubspot_webhook_url and self.webhook_secret())

    def webhook_secret(self) -> str | None:
        """The client secret deliveries are signed with."""
        secret = self.hubspot_webhook_client_secret or self.hubspot_client_secret
        return secret.get_secret_value() if secret else None

    # --- notifications (sync.notify) ---
    handoff_smtp_host: str | None = Field(None, description="SMTP server for email notifications")
    handoff_smtp_port: int | None = Field(
        None, ge=1, le=65_535, description="default 587 (starttls), 465 (tls), 25 (none)"
    )
    handoff_smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (STARTTLS required), tls (implicit TLS) or none (plain SMTP)"
    )
    handoff_smtp_user: str | None = None
    handoff_smtp_password: SecretStr | None = None
    handoff_smtp_from: str | None = Field(None, description="the From address of notification emails")
    handoff_smtp_ca_bundle: Path | None = Field(None, description="PEM bundle to verify the SMTP server")
    handoff_notify_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="per Slack request / SMTP connection and command"
    )
    handoff_notify_max_attempts: int = Field(
        5, ge=1, le=100, description="a message still failing after this many cycles is a record error"
    )
    hubspot_portal_id: int | None = Field(
        None, ge=1, description="the HubSpot account (Hub) id, for links to contact records"
    )
    hubspot_app_url: str = Field(
        "https://app.hubspot.com", description="HubSpot's web app (EU accounts: https://app-eu1.hubspot.com)"
    )
    salesforce_app_url: str | None = Field(
        None, description="Salesforce's web host for record links (default SALESFORCE_INSTANCE_URL)"
    )

    @field_validator("handoff_smtp_host", "handoff_smtp_user", "handoff_smtp_from", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("handoff_smtp_host")
    @classmethod
    def _smtp_host(cls, value: str | None) -> str | None:
        if value and (re.search(r"[\s/@]", value.strip()) or ":" in value.strip().strip("[]")):
            raise ValueError("expected a host name or address only (the port is HANDOFF_SMTP_PORT)")
        return value.strip() if value else None

    @field_validator("handoff_smtp_security", mode="before")
    @classmethod
    def _security(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("handoff_smtp_from")
    @classmethod
    def _from(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+", value.strip()):
            raise ValueError("expected one email address, e.g. handoff@example.com")
        if value is None and info.data.get("handoff_smtp_host"):
            raise ValueError("required with HANDOFF_SMTP_HOST: the address notification emails come from")
        return value.strip() if value else None

    @field_validator("handoff_smtp_password")
    @classmethod
    def _password(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not info.data.get("handoff_smtp_user"):
            raise ValueError("set HANDOFF_SMTP_USER too (the password is for that user)")
        return value

    @field_validator("handoff_smtp_ca_bundle", mode="before")
    @classmethod
    def _blank_ca(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("handoff_smtp_ca_bundle")
    @classmethod
    def _smtp_ca(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_ca_bundle(value)
        return value

    @field_validator("hubspot_app_url", "salesforce_app_url", mode="before")
    @classmethod
    def _app_url(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            return "https://app.hubspot.com" if info.field_name == "hubspot_app_url" else None
        return check_url(value) if isinstance(value, str) else value

    @property
    def smtp_port(self) -> int:
        """The SMTP port: the setting, else the usual one for the security mode."""
        return self.handoff_smtp_port or {"starttls": 587, "tls": 465, "none": 25}[self.handoff_smtp_security]


def check_url(value: str) -> str:
    """An http(s) URL with a host and nothing after the path, without its trailing ``/``."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    if re.search(r"\s", text) or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL such as https://api.example.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("expected scheme://host[:port][/path], without credentials, query or fragment")
    return text.rstrip("/")


def check_webhook_url(value: str) -> str:
    """The public http(s) URL HubSpot delivers to, exactly as its signature covers it."""
    text = value.strip()
    parts = urlsplit(text)
    if re.search(r"\s", text) or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "expected the http(s) URL HubSpot calls, e.g. https://handoff.example.com/webhooks/hubspot"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("expected scheme://host[:port]/path, without credentials, query or fragment")
    return text


def parse_event_kinds(value: str) -> dict[str, str]:
    """``HUBSPOT_EVENT_KINDS``: a JSON object of HubSpot event type -> a real activity kind."""
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"expected a JSON object ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(
            'expected a JSON object of event type -> activity kind, e.g. {"e_visited_page": "page_view"}'
        )
    out: dict[str, str] = {}
    for event, kind in data.items():
        if not event.strip() or re.search(r"\s", event):
            raise ValueError(f"{event!r} is not an event type name")
        if kind not in ACTIVITY_KINDS:
            raise ValueError(
                f"{event}: unknown activity kind {kind!r}; expected one of {', '.join(ACTIVITY_KINDS)}"
            )
        out[event] = str(kind)
    return out


def check_state_url(value: str) -> None:
    """A SQLAlchemy URL whose dialect is known and whose (synchronous) driver is installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(
            "not a database URL; expected sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"
        ) from None
    try:
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except ArgumentError:  # NoSuchModuleError
        raise ValueError(
            f"unknown database dialect {url.drivername!r}; expected sqlite or postgresql+psycopg"
        ) from None
    except ImportError as exc:
        raise ValueError(f"the driver of {url.drivername!r} is not installed ({exc.name or exc})") from None
    if getattr(dialect, "is_async", False):
        raise ValueError(f"{url.drivername!r} is an async driver; use postgresql+psycopg")


def check_ca_bundle(path: Path) -> None:
    """A readable file of PEM CA certificates (what TLS verification will load)."""
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a PEM CA certificate bundle ({type(exc).__name__})") from None


def _secret_files(env: dict[str, str]) -> dict[str, str]:
    out = {}
    for name in SECRETS:
        path = env.get(f"{name}_FILE")
        if path and not env.get(name):
            try:
                out[name] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return out


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (plus ``*_FILE`` secrets); ConfigError when invalid."""
    env = dict(os.environ)
    extra = _secret_files(env)
    try:
        values: dict[str, object] = {k.lower(): v for k, v in extra.items()}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError([_problem(e) for e in exc.errors()]) from None


_SECRET_FIELDS = {name.lower() for name in SECRETS} | {"handoff_state_url"}  # its password


def _problem(error: Any) -> str:
    """One line naming the variable; the value given only when it is not a secret."""
    field = str(error["loc"][0]) if error.get("loc") else "?"
    msg = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if (
        field not in _SECRET_FIELDS
        and isinstance(given, str | int | float)
        and error["type"] != "value_error"
    ):
        msg += f" (got {str(given)[:80]!r})"
    return f"setting {field.upper()}: {msg}"
