"""The one place that turns a Salesforce response into crm-handoff's error tree."""

from __future__ import annotations

from typing import Any

from sync.errors import AuthError, CrmError, HandoffError, QuotaExhausted, RetriableCrmError

RETRIABLE_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"}


def _first(content: Any) -> tuple[str, str]:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        item = content[0]
        return str(item.get("errorCode") or item.get("statusCode") or ""), str(item.get("message") or "")
    if isinstance(content, dict):
        return str(content.get("error") or ""), str(content.get("error_description") or "")
    return "", str(content)[:200] if content else ""


def classify(exc: Exception) -> HandoffError:
    """Classify an exception raised by simple-salesforce."""
    if isinstance(exc, HandoffError):
        return exc
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


def record_error(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(message, code) of a per-record Collections error list."""
    if not errors:
        return "failed without an error message", None
    first = errors[0]
    code = first.get("statusCode") or first.get("errorCode")
    fields = first.get("fields") or []
    where = f" [{', '.join(fields)}]" if fields else ""
    return f"{code}: {first.get('message', '')}{where}", code
