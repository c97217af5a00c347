"""The log redactor: every secret setting's value is replaced by ``***`` wherever it sits in
a log event (nested values too) and in the forms it is written in."""

from __future__ import annotations

import json

import pytest
import structlog

from sync import logs
from sync.cli import _secrets
from sync.settings import SECRETS, load_settings


def test_every_secret_setting_is_redacted_in_json_logs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    values = {name: f"secret-{name.lower()}-Zq9" for name in SECRETS}
    values["SALESFORCE_PRIVATE_KEY"] = (
        "-----BEGIN PRIVATE KEY-----\\nMIIEvQ-key-body\\n-----END PRIVATE KEY-----"
    )
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HANDOFF_SMTP_USER", "notifier")  # the SMTP password is for a user
    settings = load_settings()
    logs.configure("json", "debug", _secrets(settings))
    log = structlog.get_logger("test")
    for value in values.values():
        log.debug("event", flat=f"x {value} y", nested={"list": [value, {"deep": value}]}, pair=(value, 1))
    log.debug("pem", key=values["SALESFORCE_PRIVATE_KEY"].replace("\\n", "\n"))
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert len(lines) == len(values) + 1 and lines[0]["flat"] == "x *** y"
    assert lines[0]["nested"] == {"list": ["***", {"deep": "***"}]}
    assert lines[-1]["key"] == "***"  # the key with real newlines, as the JWT flow reads it
    for value in values.values():
        assert value not in err
    assert "MIIEvQ-key-body" not in err


def test_a_token_obtained_at_run_time_is_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Salesforce login's session id never reaches a log line (the auth registers it)."""
    import requests

    from connectors.salesforce.auth import SalesforceAuth, SalesforceAuthSettings

    session = "00Dxx0000001gPL!AQ4AQRuntimeSessionZq9"
    auth = SalesforceAuth(
        SalesforceAuthSettings(
            instance_url="https://sf.example",
            client_id="cid",
            client_secret="cs-Zq9x",
            username="u@x.example",
            password="pw-Zq9x",
        ),
        requests.Session(),
    )
    monkeypatch.setattr(
        auth, "_post", lambda form: {"access_token": session, "instance_url": "https://sf.example"}
    )
    logs.configure("json", "debug")
    auth.login()
    structlog.get_logger("test").debug("after login", header=f"Bearer {session}")
    err = capsys.readouterr().err
    assert session not in err and "Bearer ***" in err
