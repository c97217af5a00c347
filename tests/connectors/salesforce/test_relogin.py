"""A Salesforce session that expires mid-run: the connector logs in again (once) and the
call goes on; a session the org still refuses after that is one AuthError line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.salesforce.auth import SalesforceAuthSettings
from connectors.salesforce.connector import SalesforceConnector, SalesforceSettings
from connectors.salesforce.sandbox import Faults, SalesforceSandbox, SalesforceStore
from crm_handoff.errors import AuthError

CLIENT_ID = "3MVG9-relogin-key"
CLIENT_SECRET = "cs-relogin-5e6f7a8b"
TOKEN_CALLS = "POST /services/oauth2/token"
QUERY = "GET /query"


@pytest.fixture
def sandbox() -> Iterator[SalesforceSandbox]:
    box = SalesforceSandbox(
        SalesforceStore(), faults=Faults(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    box.start()
    yield box
    box.stop()


def connector(box: SalesforceSandbox) -> SalesforceConnector:
    auth = SalesforceAuthSettings(
        login_url=box.instance_url or "",
        ca_bundle=box.ca_bundle,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    return SalesforceConnector(SalesforceSettings(auth=auth, max_wait=0.01))


def users(conn: SalesforceConnector) -> list[str]:
    return [str(r["Username"]) for r in conn.query("SELECT Id, Username FROM User")]


def test_an_expired_session_logs_in_again_once_and_the_call_succeeds(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    assert users(conn) and sandbox.calls[TOKEN_CALLS] == 1
    stale = conn.sf.session_id
    sandbox.faults.expire_session_next = 1  # the org ends the session mid-run: 401 INVALID_SESSION_ID
    assert users(conn)
    assert sandbox.calls[TOKEN_CALLS] == 2  # exactly one re-login
    assert sandbox.calls[QUERY] == 3  # first run, the refused call, the same call again
    assert conn.sf.session_id != stale
    assert users(conn) and sandbox.calls[TOKEN_CALLS] == 2  # the new session is kept


def test_a_session_refused_after_the_relogin_is_one_auth_error_line(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    sandbox.faults.expire_session_next = 100
    with pytest.raises(AuthError) as info:
        users(conn)
    text = str(info.value)
    assert (
        text == "salesforce: INVALID_SESSION_ID: Session expired or invalid (check SALESFORCE_ACCESS_TOKEN)"
    )
    assert sandbox.calls[TOKEN_CALLS] == 2 and sandbox.calls[QUERY] == 2  # one re-login, no loop
    assert CLIENT_SECRET not in text and str(conn.sf.session_id) not in text
