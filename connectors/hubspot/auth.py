"""HubSpot authentication: a static access token, or OAuth refresh through the SDK.

A private-app / service-key token is used as given (it does not expire on its own). With
OAuth client id + secret + refresh token, ``token()`` exchanges the refresh token at
``{base_url}/oauth/v1/token`` (SDK ``oauth.tokens_api.create``) and refreshes again when
the access token is within ``REFRESH_MARGIN`` of its ``expires_in``; the connector calls
``invalidate()`` after a 401 to force a refresh. Thread-safe; secrets never print.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import urllib3
from hubspot import HubSpot

from connectors.hubspot.errors import classify
from connectors.hubspot.transport import NO_RETRIES
from crm_handoff.errors import AuthError, ConfigError, HandoffError, RetriableCrmError
from crm_handoff.secrets import register_secret

log = structlog.get_logger("handoff.hubspot.auth")

REFRESH_MARGIN = 300.0  # seconds before expiry at which a token is refreshed
RETRIABLE_STATUSES = {429, 500, 502, 503, 504}


class _NoBodies(logging.Filter):
    """The SDK's REST layer debug-logs response bodies; token responses hold secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("response body")


logging.getLogger("hubspot.oauth.rest").addFilter(_NoBodies())


@dataclass(frozen=True)
class HubSpotAuthSettings:
    """A static access token, or OAuth client id + secret + refresh token."""

    base_url: str = "https://api.hubapi.com"
    access_token: str = field(default="", repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    timeout: float = 60.0

    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in (self.access_token, self.client_secret, self.refresh_token) if v)


class HubSpotAuth:
    """Hands out a valid HubSpot access token; refreshes OAuth tokens before they expire."""

    def __init__(self, settings: HubSpotAuthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        s = settings
        oauth = (s.client_id, s.client_secret, s.refresh_token)
        if any(oauth) and not all(oauth):
            missing = [
                n
                for n, v in zip(
                    ("HUBSPOT_CLIENT_ID", "HUBSPOT_CLIENT_SECRET", "HUBSPOT_REFRESH_TOKEN"),
                    oauth,
                    strict=True,
                )
                if not v
            ]
            raise ConfigError(f"HubSpot OAuth: also set {' and '.join(missing)}")
        if not any(oauth) and not s.access_token:
            raise ConfigError(
                "HubSpot: set HUBSPOT_ACCESS_TOKEN (private app / service key) or "
                "HUBSPOT_CLIENT_ID + HUBSPOT_CLIENT_SECRET + HUBSPOT_REFRESH_TOKEN (OAuth)"
            )
        self.settings = settings
        self.can_refresh = all(oauth)
        self._clock = clock
        self._lock = threading.Lock()
        # With OAuth, a given access token is not used: its expiry is unknown.
        self._token: str | None = None if self.can_refresh else s.access_token
        self._expires_at = float("inf")
        self._refresh_token = s.refresh_token
        self.refreshes = 0

    def __repr__(self) -> str:
        kind = "oauth-refresh" if self.can_refresh else "static-token"
        return f"HubSpotAuth({kind}, base_url={self.settings.base_url!r})"

    def token(self) -> str:
        """A valid access token, refreshed first when it expires within 5 minutes."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN:
                self._refresh()
            assert self._token is not None
            return self._token

    def invalidate(self, stale_token: str | None = None) -> None:
        """Forget the current token after a 401 so the next ``token()`` refreshes.

        A static token cannot be replaced: AuthError. Pass the rejected token so that a
        token another thread has already refreshed is kept.
        """
        if not self.can_refresh:
            raise AuthError(
                "hubspot",
                "HTTP 401: the access token was rejected; check or renew HUBSPOT_ACCESS_TOKEN",
                401,
            )
        with self._lock:
            if stale_token is None or stale_token == self._token:
                self._token = None

    def request_auth(self) -> dict[str, str]:
        """``_request_auth=`` for a generated SDK call: the current Bearer token."""
        return {"in": "header", "type": "oauth2", "key": "Authorization", "value": f"Bearer {self.token()}"}

    # ------------------------------------------------------------------ refresh

    def _refresh(self) -> None:
        if not self.can_refresh:
            raise AuthError("hubspot", "no access token (set HUBSPOT_ACCESS_TOKEN)")
        s = self.settings
        base = s.base_url.rstrip("/")
        client = HubSpot(host=base, base_url=base, retry=NO_RETRIES)  # retried by the caller
        started = self._clock()
        try:
            resp = client.oauth.tokens_api.create(
                grant_type="refresh_token",
                client_id=s.client_id,
                client_secret=s.client_secret,
                refresh_token=self._refresh_token,
                _request_timeout=(min(10.0, s.timeout), s.timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _refresh_failed(classify(exc, base)) from exc
        except Exception as exc:
            raise self._error(exc) from None
        token = getattr(resp, "access_token", None)
        if not token:
            raise AuthError("hubspot", "token refresh: the response has no access_token")
        expires_in = getattr(resp, "expires_in", None)
        rotated = getattr(resp, "refresh_token", None)
        if rotated:  # HubSpot keeps it; follow it if a server ever rotates it
            self._refresh_token = str(rotated)
        self._token = str(token)
        register_secret(self._token)  # a refreshed token is a credential: never in a log line
        if rotated:
            register_secret(self._refresh_token)
        self._expires_at = started + float(expires_in) if expires_in is not None else float("inf")
        self.refreshes += 1
        log.info("hubspot access token refreshed", expires_in=expires_in)

    def _error(self, exc: Exception) -> Exception:
        status = getattr(exc, "status", None)
        if not status and getattr(exc, "reason", None):  # status 0: no answer (the SDK's SSLError)
            return _refresh_failed(classify(exc, self.settings.base_url))
        if status is None:
            return AuthError("hubspot", f"token refresh failed: {type(exc).__name__}")
        body = _body(getattr(exc, "body", None))
        code = str(body.get("status") or body.get("error") or f"HTTP {status}")
        message = str(
            body.get("message") or body.get("error_description") or getattr(exc, "reason", "") or ""
        )
        text = " ".join(f"{code}: {message}".split())[:300]
        for secret in {*self.settings.secrets(), self._refresh_token} - {""}:
            text = text.replace(secret, "***")
        text = f"token refresh failed (HTTP {status}) {text}; check HUBSPOT_CLIENT_ID/SECRET/REFRESH_TOKEN"
        if status in RETRIABLE_STATUSES:
            return RetriableCrmError("hubspot", text, int(status))
        return AuthError("hubspot", text, int(status))


def _refresh_failed(error: HandoffError) -> HandoffError:
    """``error`` (a token refresh that got no answer), said to come from the token refresh."""
    if isinstance(error, RetriableCrmError):
        return RetriableCrmError("hubspot", f"token refresh: {str(error).removeprefix('hubspot: ')}")
    return error


def _body(raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        data = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
