"""An OAuth access token that expires mid-run: the connector refreshes it (once) and the
call goes on; a 401 that persists after the refresh is one AuthError line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.hubspot.auth import HubSpotAuthSettings
from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from crm_handoff.errors import AuthError

CLIENT_ID = "relogin-client-id"
CLIENT_SECRET = "hs-relogin-secret-7c8d9e"
REFRESH = "na1-relogin-refresh-0f1e2d"
TOKEN_CALLS = "POST /oauth/v1/token"
OWNERS = "GET /crm/v3/owners"


@pytest.fixture
def sandbox() -> Iterator[HubSpotSandbox]:
    store = HubSpotStore(portal_id=4242)
    store.add_owner("rep@example.com", "Rita", "Rep")
    box = HubSpotSandbox(store, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH)
    box.start()
    yield box
    box.stop()


def connector(box: HubSpotSandbox) -> HubSpotConnector:
    auth = HubSpotAuthSettings(
        base_url=box.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH
    )
    return HubSpotConnector(HubSpotSettings(auth=auth, max_wait=0.01))


def test_an_expired_token_is_refreshed_once_and_the_call_succeeds(sandbox: HubSpotSandbox) -> None:
    conn = connector(sandbox)
    assert [o.email for o in conn.pull_owners()] == ["rep@example.com"]
    assert sandbox.calls[TOKEN_CALLS] == 1
    owners_before = sandbox.calls[OWNERS]
    sandbox.expire_issued_tokens()  # HubSpot answers 401 EXPIRED_AUTHENTICATION from now on
    assert [o.email for o in conn.pull_owners()] == ["rep@example.com"]
    assert sandbox.calls[TOKEN_CALLS] == 2  # exactly one refresh
    assert sandbox.calls[OWNERS] - owners_before == owners_before + 1  # and the refused call, once
    assert conn.pull_owners() and sandbox.calls[TOKEN_CALLS] == 2  # the new token is kept


def test_a_401_that_persists_after_the_refresh_is_one_auth_error_line(sandbox: HubSpotSandbox) -> None:
    conn = connector(sandbox)
    sandbox.faults.unauthorized = True
    with pytest.raises(AuthError) as info:
        conn.pull_owners()
    text = str(info.value)
    assert "\n" not in text and text.startswith("hubspot: HTTP 401: ")
    assert text.endswith("(check HUBSPOT_ACCESS_TOKEN and its scopes)")
    assert sandbox.calls[TOKEN_CALLS] == 2  # one refresh, no loop
    assert sandbox.calls[OWNERS] == 2
    assert CLIENT_SECRET not in text and REFRESH not in text
