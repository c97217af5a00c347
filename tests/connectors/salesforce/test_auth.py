"""Salesforce authentication flows against the sandbox over real HTTPS."""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession

from connectors.salesforce.auth import SalesforceAuth, SalesforceAuthSettings, choose_flow
from connectors.salesforce.sandbox import Faults, SalesforceSandbox, SalesforceStore
from connectors.salesforce.transport import MeteredSession
from crm_handoff.errors import AuthError, ConfigError
from sync.settings import load_settings

CLIENT_ID = "3MVG9-consumer-key"
CLIENT_SECRET = "cs-9f8e7d6c5b4a"
USERNAME = "integration@acme.example"
PASSWORD = "pw-Correct-Horse"
SECURITY_TOKEN = "st-XYZ123"
REFRESH = "5Aep861-refresh-token"
TOKEN_CALLS = "POST /services/oauth2/token"


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


PRIVATE_KEY, PUBLIC_KEY = _rsa_pair()
OTHER_KEY, _ = _rsa_pair()


@pytest.fixture(scope="module")
def server() -> Iterator[SalesforceSandbox]:
    box = SalesforceSandbox(
        SalesforceStore(),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH,
        jwt_public_key=PUBLIC_KEY,
        username=USERNAME,
        password=PASSWORD,
        security_token=SECURITY_TOKEN,
    )
    box.start()
    yield box
    box.stop()


@pytest.fixture
def sandbox(server: SalesforceSandbox) -> SalesforceSandbox:
    server.faults = Faults()
    server.calls.clear()
    return server


def session(box: SalesforceSandbox) -> MeteredSession:
    s = MeteredSession(10.0, box.ca_bundle or True)
    s.trust_env = False
    return s


def flow_settings(box: SalesforceSandbox, flow: str) -> SalesforceAuthSettings:
    base = SalesforceAuthSettings(login_url=box.instance_url or "", ca_bundle=box.ca_bundle)
    if flow == "jwt_bearer":
        return replace(base, client_id=CLIENT_ID, username=USERNAME, private_key=PRIVATE_KEY)
    if flow == "client_credentials":
        return replace(base, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    if flow == "refresh_token":
        return replace(base, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH)
    if flow == "password":
        return replace(
            base,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            username=USERNAME,
            password=PASSWORD,
            security_token=SECURITY_TOKEN,
        )
    assert flow == "access_token"
    return replace(base, access_token=box.token, instance_url=box.instance_url or "")


def client(box: SalesforceSandbox, token: str, instance_url: str) -> Salesforce:
    return Salesforce(instance_url=instance_url, session_id=token, version="62.0", session=session(box))


def use_session(sf: Salesforce, token: str) -> None:
    """What the connector does with a refreshed session (same instance URL)."""
    sf.session_id = token
    sf.headers["Authorization"] = f"Bearer {token}"


def users(sf: Salesforce) -> int:
    return int(sf.query("SELECT Id FROM User")["totalSize"])


REFRESHABLE = ["jwt_bearer", "client_credentials", "refresh_token", "password"]
ALL_FLOWS = [*REFRESHABLE, "access_token"]
SECRET_VALUES = [CLIENT_SECRET, PASSWORD, SECURITY_TOKEN, PASSWORD + SECURITY_TOKEN, REFRESH, PRIVATE_KEY]


# --------------------------------------------------------------------------- flows


@pytest.mark.parametrize("flow", ALL_FLOWS)
def test_each_flow_gets_a_session_that_the_api_accepts(sandbox: SalesforceSandbox, flow: str) -> None:
    auth = SalesforceAuth(flow_settings(sandbox, flow), session(sandbox))
    assert auth.flow == flow
    assert auth.can_refresh is (flow != "access_token")
    token, instance_url = auth.login()
    assert instance_url == sandbox.instance_url
    assert auth.instance_url == instance_url
    assert users(client(sandbox, token, instance_url)) >= 1
    assert sandbox.calls[TOKEN_CALLS] == (0 if flow == "access_token" else 1)
    if flow != "access_token":
        assert token != sandbox.token  # a freshly issued session


def test_token_request_goes_through_the_given_session(sandbox: SalesforceSandbox) -> None:
    s = session(sandbox)
    SalesforceAuth(flow_settings(sandbox, "client_credentials"), s).login()
    assert s.calls[TOKEN_CALLS] == 1


def test_jwt_assertion_claims(sandbox: SalesforceSandbox) -> None:
    auth = SalesforceAuth(flow_settings(sandbox, "jwt_bearer"), session(sandbox))
    claims = jwt.decode(auth._assertion(), PUBLIC_KEY, algorithms=["RS256"], audience=sandbox.instance_url)
    assert claims["iss"] == CLIENT_ID
    assert claims["sub"] == USERNAME
    assert 0 < claims["exp"] - time.time() <= 180


def test_private_key_with_escaped_newlines_works(sandbox: SalesforceSandbox) -> None:
    folded = PRIVATE_KEY.strip().replace("\n", "\\n")
    settings = replace(flow_settings(sandbox, "jwt_bearer"), private_key=folded)
    token, url = SalesforceAuth(settings, session(sandbox)).login()
    assert users(client(sandbox, token, url)) >= 1


# --------------------------------------------------------------------------- failures


BAD = {
    "jwt_bearer": {"private_key": OTHER_KEY},
    "client_credentials": {"client_secret": "cs-WRONG-secret-123"},
    "refresh_token": {"refresh_token": "WRONG-refresh-456"},
    "password": {"password": "WRONG-password-789"},
}


@pytest.mark.parametrize("flow", REFRESHABLE)
def test_bad_secret_is_a_one_line_auth_error_without_the_secret(
    sandbox: SalesforceSandbox, flow: str
) -> None:
    settings = replace(flow_settings(sandbox, flow), **BAD[flow])
    auth = SalesforceAuth(settings, session(sandbox))
    with pytest.raises(AuthError) as info:
        auth.login()
    message = str(info.value)
    assert message.startswith("salesforce: invalid_")
    assert "\n" not in message
    shown = "".join(traceback.format_exception(info.value))  # what a crash would print
    for secret in [*SECRET_VALUES, *BAD[flow].values(), *settings.secrets()]:
        assert secret not in message
        assert secret not in shown


def test_wrong_jwt_issuer_and_user_are_refused(sandbox: SalesforceSandbox) -> None:
    for change, expected in (
        ({"client_id": "someone-else"}, "invalid_client_id"),
        ({"username": "nobody@acme.example"}, "invalid_grant"),
    ):
        auth = SalesforceAuth(replace(flow_settings(sandbox, "jwt_bearer"), **change), session(sandbox))
        with pytest.raises(AuthError, match=expected):
            auth.login()


def test_jwt_audience_must_be_the_login_url(sandbox: SalesforceSandbox) -> None:
    auth = SalesforceAuth(flow_settings(sandbox, "jwt_bearer"), session(sandbox))
    auth.login_url = "https://login.salesforce.com"  # aud claim; the POST still goes there, so:
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": auth._assertion()}
    resp = session(sandbox).post(f"{sandbox.instance_url}/services/oauth2/token", data=form)
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_grant", "error_description": "audience is invalid"}


def test_unusable_private_key_is_a_config_error_without_the_key(sandbox: SalesforceSandbox) -> None:
    junk = "-----BEGIN PRIVATE KEY-----\nnot-a-key-SECRETISH\n-----END PRIVATE KEY-----"
    auth = SalesforceAuth(replace(flow_settings(sandbox, "jwt_bearer"), private_key=junk), session(sandbox))
    with pytest.raises(ConfigError) as info:
        auth.login()
    assert "SECRETISH" not in str(info.value)


def test_unreachable_login_host_is_retriable(sandbox: SalesforceSandbox) -> None:
    from crm_handoff.errors import RetriableCrmError

    settings = replace(flow_settings(sandbox, "client_credentials"), login_url="https://127.0.0.1:9")
    with pytest.raises(RetriableCrmError, match="connection failed"):
        SalesforceAuth(settings, session(sandbox)).login()


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"private_key": "k"}, "SALESFORCE_CLIENT_ID and SALESFORCE_USERNAME"),
        ({"refresh_token": "r"}, "SALESFORCE_CLIENT_ID"),
        ({"password": "p", "client_id": "c"}, "SALESFORCE_CLIENT_SECRET and SALESFORCE_USERNAME"),
        ({"client_secret": "s"}, "SALESFORCE_CLIENT_ID"),
        ({"access_token": "t"}, "SALESFORCE_INSTANCE_URL"),
        ({}, "no credentials"),
    ],
)
def test_incomplete_settings_say_what_is_missing(values: dict[str, Any], missing: str) -> None:
    with pytest.raises(ConfigError, match=missing) as info:
        choose_flow(SalesforceAuthSettings(**values))
    for v in values.values():
        assert f"={v}" not in str(info.value)


# --------------------------------------------------------------------------- re-authentication


@pytest.mark.parametrize("flow", REFRESHABLE)
def test_relogin_after_an_expired_session(sandbox: SalesforceSandbox, flow: str) -> None:
    auth = SalesforceAuth(flow_settings(sandbox, flow), session(sandbox))
    token, url = auth.login()
    sf = client(sandbox, token, url)
    sandbox.faults.expire_session_next = 1
    with pytest.raises(SalesforceExpiredSession):
        users(sf)
    new_token, new_url = auth.refresh(stale_token=token)
    assert new_token != token and new_url == url
    use_session(sf, new_token)
    assert users(sf) >= 1
    assert sandbox.calls[TOKEN_CALLS] == 2


def test_direct_token_cannot_refresh_and_says_what_to_renew(sandbox: SalesforceSandbox) -> None:
    auth = SalesforceAuth(flow_settings(sandbox, "access_token"), session(sandbox))
    token, url = auth.login()
    sandbox.faults.expire_session_next = 1
    with pytest.raises(SalesforceExpiredSession):
        users(client(sandbox, token, url))
    with pytest.raises(AuthError, match="renew SALESFORCE_ACCESS_TOKEN") as info:
        auth.refresh(stale_token=token)
    assert token not in str(info.value)
    assert sandbox.calls[TOKEN_CALLS] == 0


def test_concurrent_refreshes_of_the_same_stale_token_log_in_once(sandbox: SalesforceSandbox) -> None:
    auth = SalesforceAuth(flow_settings(sandbox, "client_credentials"), session(sandbox))
    stale, _ = auth.login()
    results: list[str] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        results.append(auth.refresh(stale_token=stale)[0])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and stale not in results
    assert sandbox.calls[TOKEN_CALLS] == 2  # the first login + one refresh


# --------------------------------------------------------------------------- secrecy and settings


@pytest.mark.parametrize("flow", ALL_FLOWS)
def test_no_secret_in_repr(sandbox: SalesforceSandbox, flow: str) -> None:
    settings = flow_settings(sandbox, flow)
    auth = SalesforceAuth(settings, session(sandbox))
    token, _ = auth.login()
    for text in (repr(settings), repr(auth), str(settings)):
        for secret in [*SECRET_VALUES, token, sandbox.token]:
            assert secret not in text


def test_settings_read_auth_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "sf.pem"
    key_file.write_text(PRIVATE_KEY)
    secret_file = tmp_path / "secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    for name in list(os.environ):
        if name.startswith(("SALESFORCE_", "HUBSPOT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", "https://acme.my.salesforce.com")
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SALESFORCE_USERNAME", USERNAME)
    monkeypatch.setenv("SALESFORCE_PRIVATE_KEY_FILE", str(key_file))
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET_FILE", str(secret_file))
    monkeypatch.setenv("SALESFORCE_PASSWORD", PASSWORD)
    monkeypatch.setenv("SALESFORCE_SECURITY_TOKEN", SECURITY_TOKEN)
    monkeypatch.setenv("SALESFORCE_REFRESH_TOKEN", REFRESH)
    s = load_settings()
    assert s.salesforce_enabled and not s.hubspot_enabled
    assert s.salesforce_private_key is not None
    assert s.salesforce_private_key.get_secret_value() == PRIVATE_KEY.strip()
    assert s.salesforce_client_secret is not None
    assert s.salesforce_client_secret.get_secret_value() == CLIENT_SECRET
    for secret in SECRET_VALUES:
        assert secret not in repr(s) and secret not in str(s)


def test_any_salesforce_credential_enables_salesforce(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("SALESFORCE_", "HUBSPOT_")):
            monkeypatch.delenv(name)
    assert not load_settings().salesforce_enabled
    assert load_settings(salesforce_login_url="https://test.salesforce.com").salesforce_enabled
    assert load_settings(salesforce_client_id=CLIENT_ID).salesforce_enabled
    assert load_settings(salesforce_refresh_token=REFRESH).salesforce_enabled
