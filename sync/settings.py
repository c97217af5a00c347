"""Settings from the environment (12-factor), validated by pydantic-settings.

Secrets come only from the environment or from files: every secret ``X`` can also be
given as ``X_FILE`` (a path, e.g. a mounted Kubernetes Secret). Secret values are
``SecretStr`` so they never print in logs, errors or ``repr``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync.errors import ConfigError

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
    hubspot_timeout_seconds: float = Field(60.0, gt=0)
    hubspot_api_version: str = Field(
        "v3",
        pattern=r"^(v3|\d{4}-\d{2})$",
        description="v3 (what the SDK calls) or a date version, e.g. 2026-03",
    )

    salesforce_instance_url: str | None = None
    salesforce_access_token: SecretStr | None = None
    salesforce_ca_bundle: Path | None = None
    salesforce_api_version: str = "62.0"
    salesforce_timeout_seconds: float = Field(60.0, gt=0)
    salesforce_budget_run_percent: float = Field(
        25.0, gt=0, le=100, description="share of the daily API allocation one run may use"
    )
    salesforce_budget_total_percent: float = Field(
        80.0, gt=0, le=100, description="stop when the org has used this share"
    )
    salesforce_bulk_threshold: int = Field(
        10_000, ge=0, description="a first sync of more records than this per object uses Bulk API 2.0"
    )
    salesforce_window_lag_seconds: float = Field(
        2.0, ge=0, le=3600, description="pull windows end this far behind now"
    )

    @field_validator("salesforce_api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.removeprefix("v")
        if not value.replace(".", "").isdigit():
            raise ValueError("expected a version like 62.0")
        return value

    def event_kinds(self) -> dict[str, str] | None:
        if not self.hubspot_event_kinds:
            return None
        try:
            data = json.loads(self.hubspot_event_kinds)
        except ValueError as exc:
            raise ConfigError(f"HUBSPOT_EVENT_KINDS: expected a JSON object ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError("HUBSPOT_EVENT_KINDS: expected a JSON object of event type -> kind")
        return {str(k): str(v) for k, v in data.items()}

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
    handoff_misfire_grace_seconds: int = Field(60, ge=1)
    handoff_stop_timeout_seconds: float = Field(20.0, gt=0, le=3_600)
    handoff_worker_id: str | None = Field(None, description="Lease holder name (default host:pid)")


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
        problems = [
            f"setting {str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors(include_input=False)
        ]
        raise ConfigError(problems) from None
