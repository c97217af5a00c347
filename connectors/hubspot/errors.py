"""The one place that turns a HubSpot response - or the lack of one - into crm-handoff's
error tree (network failures: see ``connectors/network.py``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connectors.network import Failure, diagnose, origin
from crm_handoff.errors import (
    AuthError,
    CrmConfigError,
    CrmError,
    HandoffError,
    QuotaExhausted,
    RetriableCrmError,
)

RETRIABLE_STATUSES = {423, 477, 500, 502, 503, 504, 521, 523, 524}


def _body(raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        data = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify_raw(status: int, body: Any, headers: Mapping[str, str] | None) -> HandoffError:
    """Map an HTTP status + HubSpot error body to the error the caller can act on."""
    data = _body(body)
    message = str(data.get("message") or f"HTTP {status}")[:300]
    if status == 429:
        policy = str(data.get("policyName") or "")
        if policy == "DAILY":
            return QuotaExhausted("hubspot", f"daily API limit reached: {message}", status)
        return RetriableCrmError(
            "hubspot", f"rate limited ({policy or 'burst'})", status, _retry_after(headers)
        )
    if status in RETRIABLE_STATUSES:
        wait = _retry_after(headers) or (2.0 if status == 423 else None)
        return RetriableCrmError("hubspot", f"HTTP {status}: {message}", status, wait)
    if status in (401, 403):
        return AuthError(
            "hubspot", f"HTTP {status}: {message} (check HUBSPOT_ACCESS_TOKEN and its scopes)", status
        )
    return CrmError(
        "hubspot", f"HTTP {status} {data.get('category') or ''}: {message}".replace("  ", " "), status
    )


def classify(exc: BaseException, url: str | None = None) -> HandoffError:
    """Classify an exception raised by the HubSpot SDK (or instead of a response from ``url``)."""
    if isinstance(exc, HandoffError):
        return exc
    status = getattr(exc, "status", None)
    if not status:  # no HTTP answer: the SDK reports an SSLError as status 0
        failure = diagnose(exc)
        if failure is not None:
            return network_error(failure, url)
    if status is None:
        return CrmError("hubspot", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if status == 0:
        return RetriableCrmError("hubspot", f"connection failed: {getattr(exc, 'reason', '')}")
    headers = getattr(exc, "headers", None)
    return classify_raw(int(status), getattr(exc, "body", None), dict(headers) if headers else None)


def network_error(failure: Failure, url: str | None) -> HandoffError:
    """A request to ``url`` got no answer: final (exit 2, naming the setting) or retriable."""
    where = f"{origin(url)} (HUBSPOT_BASE_URL)" if url else "HUBSPOT_BASE_URL"
    if failure.kind == "tls":
        return CrmConfigError(
            "hubspot",
            f"TLS verification of {where} failed ({failure.detail}); check HUBSPOT_BASE_URL, "
            "and that the system CA certificates (SSL_CERT_FILE) trust it",
        )
    if failure.kind == "invalid_url":
        return CrmConfigError("hubspot", f"HUBSPOT_BASE_URL: not a usable URL ({failure.detail})")
    if failure.kind == "no_such_host":
        return CrmConfigError("hubspot", f"{where}: no such host (DNS); check the host name")
    if failure.permanent:
        return CrmConfigError("hubspot", f"{where}: {failure.detail}")
    return RetriableCrmError("hubspot", f"connection failed: {where}: {failure.detail}")
