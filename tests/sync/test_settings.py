"""Every setting is validated when the settings load: one line naming the variable, no secret."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crm_handoff.errors import ConfigError
from crm_handoff.records import ACTIVITY_KINDS
from sync.cli import main
from sync.settings import load_settings

SECRET = "s3cret-Value-42"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("HUBSPOT_", "SALESFORCE_", "HANDOFF_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HANDOFF_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")


def _problem(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    """The one problem line of loading the settings with ``name=value``."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert len(err.value.problems) == 1, err.value.problems
    line = err.value.problems[0]
    assert line.startswith(f"setting {name}: ") and "\n" not in line
    return line


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("HUBSPOT_BASE_URL", "not a url", "http(s) URL"),
        ("HUBSPOT_BASE_URL", "api.hubapi.com", "http(s) URL"),
        ("HUBSPOT_BASE_URL", "ftp://api.hubapi.com", "http(s) URL"),
        ("HUBSPOT_BASE_URL", "https://api.hubapi.com:99999", "Port out of range"),
        ("HUBSPOT_BASE_URL", "https://user:pw@api.hubapi.com", "without credentials"),
        ("SALESFORCE_INSTANCE_URL", "acme.my.salesforce.com", "http(s) URL"),
        ("SALESFORCE_INSTANCE_URL", "https://acme .my.salesforce.com", "http(s) URL"),
        ("SALESFORCE_LOGIN_URL", "https://login.salesforce.com?x=1", "without credentials, query"),
        ("HUBSPOT_EVENT_KINDS", '{"e_visited_page": "pageview"}', "unknown activity kind 'pageview'"),
        ("HUBSPOT_EVENT_KINDS", '{"e_visited_page": 3}', "unknown activity kind 3"),
        ("HUBSPOT_EVENT_KINDS", '["e_visited_page"]', "expected a JSON object"),
        ("HUBSPOT_EVENT_KINDS", "{}", "expected a JSON object"),
        ("HUBSPOT_EVENT_KINDS", "e_visited_page=page_view", "expected a JSON object"),
        ("HUBSPOT_EVENT_KINDS", '{"e visited": "page_view"}', "not an event type name"),
        ("HANDOFF_STATE_URL", "foo://bar", "unknown database dialect 'foo'"),
        ("HANDOFF_STATE_URL", "not a url", "not a database URL"),
        ("HANDOFF_STATE_URL", "mysql://u@db.example/handoff", "driver of 'mysql' is not installed"),
        ("HUBSPOT_TIMEOUT_SECONDS", "0", "greater than 0"),
        ("SALESFORCE_TIMEOUT_SECONDS", "1e6", "less than or equal to 3600"),
        ("HANDOFF_METRICS_PORT", "70000", "less than or equal to 65535"),
        ("HANDOFF_LOOKBACK_SECONDS", "-1", "greater than or equal to 0"),
        ("SALESFORCE_BUDGET_RUN_PERCENT", "150", "less than or equal to 100"),
        ("HANDOFF_LOG_LEVEL", "loud", "'debug', 'info', 'warning' or 'error'"),
        ("HANDOFF_LOG_FORMAT", "xml", "'console' or 'json'"),
        ("HUBSPOT_API_VERSION", "v4", "String should match pattern"),
        ("SALESFORCE_API_VERSION", "6.2.0", "expected a version like 62.0"),
        ("SALESFORCE_CA_BUNDLE", "/no/such/ca.pem", "no such file: /no/such/ca.pem"),
        ("HANDOFF_CONFIG", "/no/such/mappings", "no such file or directory"),
        ("HANDOFF_SCHEDULE_FILE", "/no/such/schedule.yaml", "no such file or directory"),
        ("HANDOFF_AUTO_MIGRATE", "perhaps", "valid boolean"),
        ("HANDOFF_METRICS_HOST", "0.0.0.0 ", "one word"),
    ],
)
def test_an_invalid_setting_is_one_line_naming_it(monkeypatch, name, value, says):
    assert says in _problem(monkeypatch, name, value)


def test_every_activity_kind_is_accepted_in_event_kinds(monkeypatch):
    kinds = {f"e_{kind}": kind for kind in ACTIVITY_KINDS}
    monkeypatch.setenv("HUBSPOT_EVENT_KINDS", json.dumps(kinds))
    assert load_settings().event_kinds() == kinds


def test_urls_are_kept_without_their_trailing_slash_and_blank_means_unset(monkeypatch):
    monkeypatch.setenv("HUBSPOT_BASE_URL", " https://api.hubapi.com/ ")
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", "http://127.0.0.1:8443")
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", "")
    monkeypatch.setenv("HUBSPOT_EVENT_KINDS", " ")
    s = load_settings()
    assert s.hubspot_base_url == "https://api.hubapi.com"
    assert s.salesforce_instance_url == "http://127.0.0.1:8443"
    assert s.salesforce_ca_bundle is None and s.event_kinds() is None


def test_a_ca_bundle_that_is_not_pem_is_refused(monkeypatch, tmp_path):
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    assert "is not a PEM CA certificate bundle" in _problem(monkeypatch, "SALESFORCE_CA_BUNDLE", str(junk))


@pytest.mark.parametrize("name", ["HUBSPOT_ACCESS_TOKEN", "SALESFORCE_ACCESS_TOKEN", "HUBSPOT_REFRESH_TOKEN"])
def test_a_token_with_whitespace_is_refused_without_showing_it(monkeypatch, name):
    line = _problem(monkeypatch, name, f"{SECRET}\nsecond-line")
    assert "whitespace" in line and SECRET not in line


def test_the_state_url_password_is_never_echoed(monkeypatch):
    line = _problem(monkeypatch, "HANDOFF_STATE_URL", f"foo://handoff:{SECRET}@db.example/handoff")
    assert SECRET not in line


def test_several_bad_settings_are_one_line_each(monkeypatch):
    monkeypatch.setenv("HUBSPOT_BASE_URL", "not a url")
    monkeypatch.setenv("HUBSPOT_TIMEOUT_SECONDS", "-3")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert sorted(p.split(":")[0] for p in err.value.problems) == [
        "setting HUBSPOT_BASE_URL",
        "setting HUBSPOT_TIMEOUT_SECONDS",
    ]


@pytest.mark.parametrize("argv", [["validate", "--offline"], ["status"], ["report"], ["db", "current"]])
def test_every_command_refuses_an_invalid_setting_with_exit_2(monkeypatch, capsys, argv):
    monkeypatch.setenv("HUBSPOT_EVENT_KINDS", '{"e_visited_page": "pageview"}')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: setting HUBSPOT_EVENT_KINDS: e_visited_page: ")


def test_a_postgresql_state_connects_with_a_bounded_timeout():
    from sync.state import CONNECT_TIMEOUT, _connect_args

    assert _connect_args("postgresql+psycopg://u:p@db.internal/db") == {"connect_timeout": CONNECT_TIMEOUT}
    assert _connect_args("postgresql+psycopg://u:p@h/db?connect_timeout=3") == {}
    assert _connect_args("sqlite:///x.db") == {}
