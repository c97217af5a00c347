"""HubSpot authentication (static token, OAuth refresh) against the sandbox over real HTTP."""

from __future__ import annotations

import json
import logging
import os
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.owners.exceptions import ApiException

from connectors.hubspot.auth import HubSpotAuth, HubSpotAuthSettings
from connectors.hubspot.errors import classify
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from crm_handoff.errors import AuthError, ConfigError
from sync.settings import load_settings

CLIENT_ID = "5c1e-client-id"
CLIENT_SECRET = "hs-client-secret-0a1b2c"
REFRESH = "na1-refresh-token-3d4e5f"
STATIC = "pat-na1-static-token-6789"
TOKEN_CALLS = "POST /oauth/v1/token"
SECRETS = [CLIENT_SECRET, REFRESH, STATIC]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sandbox() -> Iterator[HubSpotSandbox]:
    store = HubSpotStore(portal_id=12345)
    store.add_owner("rep@example.com", "Rita", "Rep")
    box = HubSpotSandbox(
        store,
        token=STATIC,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH,
        token_ttl_seconds=302,  # refreshed once fewer than 300 s remain
    )
    box.start()
    yield box
    box.stop()


def oauth(box: HubSpotSandbox, *, clock: Clock | None = None, **changes: Any) -> HubSpotAuth:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH,
    }
    values.update(changes)
    settings = HubSpotAuthSettings(base_url=box.base_url, **values)
    return HubSpotAuth(settings, clock=clock or Clock())


def owners(box: HubSpotSandbox, auth: HubSpotAuth) -> int:
    """One SDK call, authorised per request the way the connector does it."""
    client = HubSpot(host=box.base_url)
    page = client.crm.owners.owners_api.get_page(_request_auth=auth.request_auth())
    return len(page.results)


# --------------------------------------------------------------------------- flows


def test_static_token_is_used_as_given(sandbox: HubSpotSandbox) -> None:
    auth = HubSpotAuth(HubSpotAuthSettings(base_url=sandbox.base_url, access_token=STATIC))
    assert auth.token() == STATIC and not auth.can_refresh
    assert owners(sandbox, auth) == 1
    assert sandbox.calls[TOKEN_CALLS] == 0


def test_static_token_rejected_says_what_to_renew(sandbox: HubSpotSandbox) -> None:
    auth = HubSpotAuth(HubSpotAuthSettings(base_url=sandbox.base_url, access_token="pat-revoked-111"))
    with pytest.raises(ApiException) as info:
        owners(sandbox, auth)
    assert info.value.status == 401
    with pytest.raises(AuthError, match="HUBSPOT_ACCESS_TOKEN") as err:
        auth.invalidate(auth.token())
    assert "pat-revoked-111" not in str(err.value)


def test_oauth_refresh_gets_a_token_the_api_accepts(sandbox: HubSpotSandbox) -> None:
    auth = oauth(sandbox)
    token = auth.token()
    assert token not in (STATIC, REFRESH) and auth.can_refresh
    assert owners(sandbox, auth) == 1
    assert HubSpot(access_token=token, host=sandbox.base_url).crm.owners.owners_api.get_page().results
    assert sandbox.calls[TOKEN_CALLS] == 1 and auth.refreshes == 1


def test_token_is_refreshed_before_it_expires(sandbox: HubSpotSandbox) -> None:
    clock = Clock()
    auth = oauth(sandbox, clock=clock)
    first = auth.token()
    clock.now += 1  # 301 s left: more than the 5-minute margin
    assert auth.token() == first
    clock.now += 1.5  # 299.5 s left: inside the margin, still valid at the server
    second = auth.token()
    assert second != first
    assert sandbox.calls[TOKEN_CALLS] == 2
    assert owners(sandbox, auth) == 1


def test_token_is_refreshed_after_a_401(sandbox: HubSpotSandbox) -> None:
    auth = oauth(sandbox)
    stale = auth.token()
    sandbox.expire_issued_tokens()
    with pytest.raises(ApiException) as info:
        owners(sandbox, auth)
    assert info.value.status == 401
    body = json.loads(info.value.body)
    assert body["category"] == "EXPIRED_AUTHENTICATION" and body["status"] == "error"
    assert body["message"].startswith("The OAuth token used to make this call expired")
    assert "expired" in str(classify(info.value))
    auth.invalidate(stale)
    assert auth.token() != stale
    assert owners(sandbox, auth) == 1
    assert sandbox.calls[TOKEN_CALLS] == 2


def test_invalidate_keeps_a_token_another_thread_already_refreshed(sandbox: HubSpotSandbox) -> None:
    auth = oauth(sandbox)
    stale = auth.token()
    auth.invalidate(stale)
    fresh = auth.token()
    auth.invalidate(stale)  # a late caller with the old token
    assert auth.token() == fresh
    assert sandbox.calls[TOKEN_CALLS] == 2


def test_concurrent_callers_share_one_refresh(sandbox: HubSpotSandbox) -> None:
    auth = oauth(sandbox)
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def worker() -> None:
        barrier.wait()
        tokens.append(auth.token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tokens) == 8 and len(set(tokens)) == 1
    assert sandbox.calls[TOKEN_CALLS] == 1


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"client_secret": "hs-WRONG-secret-999"}, "BAD_CLIENT_SECRET"),
        ({"refresh_token": "na1-WRONG-refresh-888"}, "BAD_REFRESH_TOKEN"),
        ({"client_id": "wrong-client-777"}, "BAD_CLIENT_ID"),
    ],
)
def test_bad_oauth_secret_is_a_one_line_auth_error(
    sandbox: HubSpotSandbox, change: dict[str, Any], code: str
) -> None:
    auth = oauth(sandbox, **change)
    with pytest.raises(AuthError, match=code) as info:
        auth.token()
    message = str(info.value)
    assert message.startswith("hubspot: token refresh failed (HTTP 400)")
    assert "\n" not in message
    shown = "".join(traceback.format_exception(info.value))
    for secret in [*SECRETS, *change.values()]:
        if secret != change.get("client_id"):
            assert secret not in message and secret not in shown


def test_unreachable_token_endpoint_is_retriable() -> None:
    from crm_handoff.errors import RetriableCrmError

    settings = HubSpotAuthSettings(
        base_url="http://127.0.0.1:9", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH
    )
    with pytest.raises(RetriableCrmError, match="connection failed"):
        HubSpotAuth(settings).token()


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"client_id": CLIENT_ID}, "HUBSPOT_CLIENT_SECRET and HUBSPOT_REFRESH_TOKEN"),
        ({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, "HUBSPOT_REFRESH_TOKEN"),
        ({}, "set HUBSPOT_ACCESS_TOKEN"),
    ],
)
def test_incomplete_settings_say_what_is_missing(values: dict[str, Any], missing: str) -> None:
    with pytest.raises(ConfigError, match=missing) as info:
        HubSpotAuth(HubSpotAuthSettings(**values))
    assert CLIENT_SECRET not in str(info.value)


# --------------------------------------------------------------------------- secrecy and settings


def test_no_secret_in_repr_or_sdk_debug_logs(
    sandbox: HubSpotSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    auth = oauth(sandbox)
    with caplog.at_level(logging.DEBUG):
        token = auth.token()
    static = HubSpotAuthSettings(base_url=sandbox.base_url, access_token=STATIC)
    texts = [repr(auth), repr(auth.settings), str(auth.settings), repr(static), repr(HubSpotAuth(static))]
    texts.append(caplog.text)
    for text in texts:
        for secret in [*SECRETS, token]:
            assert secret not in text


def test_settings_read_hubspot_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("SALESFORCE_", "HUBSPOT_")):
            monkeypatch.delenv(name)
    (tmp_path / "secret").write_text(CLIENT_SECRET + "\n")
    (tmp_path / "refresh").write_text(REFRESH)
    monkeypatch.setenv("HUBSPOT_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("HUBSPOT_REFRESH_TOKEN_FILE", str(tmp_path / "refresh"))
    s = load_settings()
    assert s.hubspot_enabled and not s.salesforce_enabled
    assert s.hubspot_client_secret is not None and s.hubspot_refresh_token is not None
    assert s.hubspot_client_secret.get_secret_value() == CLIENT_SECRET
    assert s.hubspot_refresh_token.get_secret_value() == REFRESH
    for secret in SECRETS:
        assert secret not in repr(s) and secret not in str(s)
