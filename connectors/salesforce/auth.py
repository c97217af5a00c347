"""Salesforce authentication: the OAuth 2.0 token flows, without simple-salesforce's login.

simple-salesforce hard-wires ``https://{domain}.salesforce.com`` as its login host, so
My Domain URLs, External Client Apps and local sandboxes cannot use it. Here every flow
POSTs form-encoded to ``{login_url}/services/oauth2/token`` through the connector's own
``requests.Session`` (CA bundle, timeout and call metering apply). The flow is chosen by
what is configured, most specific first:

1. JWT bearer: client id (consumer key) + username + private key (RS256, no secret).
2. Refresh token: client id (+ secret when the app has one) + refresh token.
3. Username/password (legacy): client id + secret + username + password (+ security token).
4. Client credentials: client id + secret (the app's "run as" user).
5. Direct access token + instance URL: no login call, cannot re-authenticate.

Secrets are never logged, never in ``repr`` and never in error messages.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
import requests
import structlog

from connectors.salesforce.errors import classify
from crm_handoff.errors import AuthError, ConfigError, CrmConfigError, RetriableCrmError
from crm_handoff.secrets import register_secret

log = structlog.get_logger("handoff.salesforce.auth")

Flow = Literal["jwt_bearer", "refresh_token", "password", "client_credentials", "access_token"]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME = 180  # seconds; Salesforce wants a short ``exp`` (3 minutes)
RETRIABLE_STATUSES = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class SalesforceAuthSettings:
    """What the connector knows about authenticating; secret fields never print."""

    login_url: str = "https://login.salesforce.com"
    access_token: str = field(default="", repr=False)
    instance_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    username: str = ""
    password: str = field(default="", repr=False)
    security_token: str = field(default="", repr=False)
    private_key: str = field(default="", repr=False)  # PEM text
    refresh_token: str = field(default="", repr=False)
    ca_bundle: str | None = None

    def secrets(self) -> tuple[str, ...]:
        """The non-empty secret values (to scrub from any message)."""
        values = (
            self.access_token,
            self.client_secret,
            self.password,
            self.security_token,
            self.private_key,
            self.refresh_token,
            self.password + self.security_token,
        )
        return tuple(v for v in values if v)


def choose_flow(s: SalesforceAuthSettings) -> Flow:
    """The flow the settings select; ConfigError naming what is missing."""
    if s.private_key:
        _need(s, "JWT bearer flow", client_id="SALESFORCE_CLIENT_ID", username="SALESFORCE_USERNAME")
        return "jwt_bearer"
    if s.refresh_token:
        _need(s, "refresh token flow", client_id="SALESFORCE_CLIENT_ID")
        return "refresh_token"
    if s.password:
        _need(
            s,
            "username/password flow",
            client_id="SALESFORCE_CLIENT_ID",
            client_secret="SALESFORCE_CLIENT_SECRET",
            username="SALESFORCE_USERNAME",
        )
        return "password"
    if s.client_secret:
        _need(s, "client credentials flow", client_id="SALESFORCE_CLIENT_ID")
        return "client_credentials"
    if s.access_token:
        _need(s, "a direct access token", instance_url="SALESFORCE_INSTANCE_URL")
        return "access_token"
    raise ConfigError(
        "Salesforce: no credentials. Set SALESFORCE_CLIENT_ID with SALESFORCE_PRIVATE_KEY + "
        "SALESFORCE_USERNAME (JWT bearer), SALESFORCE_CLIENT_SECRET (client credentials), "
        "SALESFORCE_REFRESH_TOKEN, or SALESFORCE_USERNAME + SALESFORCE_PASSWORD (legacy); "
        "or SALESFORCE_ACCESS_TOKEN + SALESFORCE_INSTANCE_URL"
    )


def _need(s: SalesforceAuthSettings, what: str, **names: str) -> None:
    missing = [env for attr, env in names.items() if not getattr(s, attr)]
    if missing:
        raise ConfigError(f"Salesforce {what}: also set {' and '.join(missing)}")


class SalesforceAuth:
    """Obtains Salesforce sessions and re-authenticates when one expires; thread-safe.

    ``login()`` authenticates now and returns ``(access_token, instance_url)``;
    ``refresh(stale_token)`` is what to call on ``INVALID_SESSION_ID``.
    """

    def __init__(self, settings: SalesforceAuthSettings, session: requests.Session) -> None:
        self.settings = settings
        self.session = session
        self.flow: Flow = choose_flow(settings)
        self.login_url = settings.login_url.rstrip("/")
        self._lock = threading.Lock()
        self._token: str | None = None
        self._instance_url: str | None = None

    def __repr__(self) -> str:
        return f"SalesforceAuth(flow={self.flow!r}, login_url={self.login_url!r})"

    @property
    def can_refresh(self) -> bool:
        """True when an expired session can be replaced without the user."""
        return self.flow != "access_token"

    @property
    def instance_url(self) -> str | None:
        """The instance URL of the current session (None before ``login()``)."""
        return self._instance_url

    def login(self) -> tuple[str, str]:
        """Authenticate now; ``(access_token, instance_url)``."""
        with self._lock:
            return self._login()

    def refresh(self, stale_token: str | None = None) -> tuple[str, str]:
        """A new session after ``INVALID_SESSION_ID``; AuthError if the flow cannot refresh.

        Pass the token that was rejected: when another thread has already replaced it,
        its new session is returned instead of logging in again.
        """
        if not self.can_refresh:
            raise AuthError(
                "salesforce",
                "session expired or invalid (INVALID_SESSION_ID); a direct access token cannot be "
                "renewed automatically: renew SALESFORCE_ACCESS_TOKEN, or configure a flow that can "
                "(JWT bearer, client credentials or refresh token)",
                401,
            )
        with self._lock:
            if self._token and self._instance_url and stale_token and stale_token != self._token:
                return self._token, self._instance_url
            return self._login()

    # ------------------------------------------------------------------ flows

    def _login(self) -> tuple[str, str]:
        s = self.settings
        if self.flow == "access_token":
            self._token, self._instance_url = s.access_token, s.instance_url.rstrip("/")
            return self._token, self._instance_url
        form = self._form()
        data = self._post(form)
        token = data.get("access_token")
        instance = data.get("instance_url") or s.instance_url
        if not isinstance(token, str) or not token or not instance:
            raise AuthError("salesforce", f"{self.flow} login: the token response has no access token")
        self._token, self._instance_url = token, str(instance).rstrip("/")
        register_secret(token)  # a session id is a credential: never in a log line
        log.info("salesforce authenticated", flow=self.flow, instance_url=self._instance_url)
        return self._token, self._instance_url

    def _form(self) -> dict[str, str]:
        s = self.settings
        if self.flow == "jwt_bearer":
            return {"grant_type": JWT_GRANT, "assertion": self._assertion()}
        if self.flow == "refresh_token":
            form = {"grant_type": "refresh_token", "client_id": s.client_id, "refresh_token": s.refresh_token}
            if s.client_secret:
                form["client_secret"] = s.client_secret
            return form
        if self.flow == "password":
            return {
                "grant_type": "password",
                "client_id": s.client_id,
                "client_secret": s.client_secret,
                "username": s.username,
                "password": s.password + s.security_token,
            }
        return {
            "grant_type": "client_credentials",
            "client_id": s.client_id,
            "client_secret": s.client_secret,
        }

    def _assertion(self) -> str:
        s = self.settings
        claims = {
            "iss": s.client_id,
            "sub": s.username,
            "aud": self.login_url,
            "exp": int(time.time()) + JWT_LIFETIME,
        }
        try:
            return jwt.encode(claims, _pem(s.private_key), algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            # the exception text can quote key material: name the type only
            raise ConfigError(
                f"SALESFORCE_PRIVATE_KEY: not a usable RSA private key in PEM form ({type(exc).__name__})"
            ) from None

    def _post(self, form: dict[str, str]) -> dict[str, Any]:
        url = f"{self.login_url}/services/oauth2/token"
        try:
            response = self.session.post(url, data=form, headers={"Accept": "application/json"})
        except requests.RequestException as exc:  # no answer, transient (the session raises the rest)
            error = classify(exc, url)
            message = f"{self.flow} login: {str(error).removeprefix('salesforce: ')}"
            kind = CrmConfigError if isinstance(error, ConfigError) else RetriableCrmError
            raise kind("salesforce", message) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {}
        if response.status_code >= 400 or "error" in data:
            message = self._error_text(data, response.status_code)
            if response.status_code in RETRIABLE_STATUSES:
                raise RetriableCrmError("salesforce", message, response.status_code)
            raise AuthError("salesforce", message, response.status_code)
        return data

    def _error_text(self, data: dict[str, Any], status: int) -> str:
        error = str(data.get("error") or f"HTTP {status}")
        description = str(data.get("error_description") or "")
        text = f"{error}: {description}" if description else error
        text = " ".join(text.split())[:300]  # one line
        for secret in self.settings.secrets():
            text = text.replace(secret, "***")
        return f"{text} ({self.flow} login at {self.login_url})"


def _pem(key: str) -> str:
    """A PEM key; one given on a single line with literal ``\\n`` (env files) is unfolded."""
    key = key.strip()
    return key.replace("\\n", "\n") if "\n" not in key else key
