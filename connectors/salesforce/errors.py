"""The one place that turns a Salesforce response - or the lack of one - into crm-handoff's
error tree (network failures: see ``connectors/network.py``)."""

from __future__ import annotations

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

RETRIABLE_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"}


def _first(content: Any) -> tuple[str, str]:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        item = content[0]
        return str(item.get("errorCode") or item.get("statusCode") or ""), str(item.get("message") or "")
    if isinstance(content, dict):
        return str(content.get("error") or ""), str(content.get("error_description") or "")
    return "", str(content)[:200] if content else ""


def classify(exc: BaseException, url: str | None = None, ca_bundle: str | None = None) -> HandoffError:
    """Classify an exception raised by simple-salesforce (or instead of a response from ``url``;
    ``ca_bundle``: the SALESFORCE_CA_BUNDLE it was verified with)."""
    if isinstance(exc, HandoffError):
        return exc
    failure = diagnose(exc)
    if failure is not None:
        return network_error(failure, url, ca_bundle)
    status = getattr(exc, "status", None)
    code, message = _first(getattr(exc, "content", None))
    text = f"{code}: {message}" if code else (message or type(exc).__name__)
    if code == "REQUEST_LIMIT_EXCEEDED":
        return QuotaExhausted("salesforce", f"API request limit reached ({message})", status)
    if status == 401 or code == "INVALID_SESSION_ID":
        return AuthError("salesforce", f"{text} (check SALESFORCE_ACCESS_TOKEN)", status)
    if status in (429, 500, 502, 503, 504) or code in RETRIABLE_CODES:
        return RetriableCrmError("salesforce", text, status)
    return CrmError("salesforce", f"HTTP {status}: {text}" if status else text, status)


def setting_for(url: str | None) -> str:
    """The setting that names the host of ``url``: the login host for the OAuth token
    endpoint, else the instance."""
    return "SALESFORCE_LOGIN_URL" if url and "/services/oauth2/" in url else "SALESFORCE_INSTANCE_URL"


def network_error(failure: Failure, url: str | None, ca_bundle: str | None = None) -> HandoffError:
    """A request to ``url`` got no answer: final (exit 2, naming the setting) or retriable."""
    setting = setting_for(url)
    where = f"{origin(url)} ({setting})" if url else setting
    if failure.kind == "tls":
        fix = (
            f"SALESFORCE_CA_BUNDLE ({ca_bundle}) does not trust it"
            if ca_bundle
            else "set SALESFORCE_CA_BUNDLE to the PEM bundle of the CA that signed it (the system CAs do not trust it)"
        )
        return CrmConfigError("salesforce", f"TLS verification of {where} failed ({failure.detail}): {fix}")
    if failure.kind == "ca_bundle":
        return CrmConfigError(
            "salesforce",
            f"{failure.detail} (SALESFORCE_CA_BUNDLE, or REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment)",
        )
    if failure.kind == "invalid_url":
        return CrmConfigError("salesforce", f"{setting}: not a usable URL ({failure.detail})")
    if failure.kind == "no_such_host":
        return CrmConfigError("salesforce", f"{where}: no such host (DNS); check the host name")
    return RetriableCrmError("salesforce", f"connection failed: {where}: {failure.detail}")


def record_error(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(message, code) of a per-record Collections error list."""
    if not errors:
        return "failed without an error message", None
    first = errors[0]
    code = first.get("statusCode") or first.get("errorCode")
    fields = first.get("fields") or []
    where = f" [{', '.join(fields)}]" if fields else ""
    return f"{code}: {first.get('message', '')}{where}", code
