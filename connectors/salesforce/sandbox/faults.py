"""Faults the Salesforce sandbox can inject; mutable at runtime, thread-safe."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields
from typing import Any

_COUNTERS = (
    "expire_session_next",
    "lock_error_next",
    "server_error_burst",
    "timeout_next",
    "subrequest_error_next",
)
#: HTTP status a failed Composite subrequest answers with, by error code (400 otherwise).
SUBREQUEST_STATUS = {"SERVER_UNAVAILABLE": 503, "UNKNOWN_EXCEPTION": 500, "NOT_FOUND": 404}


@dataclass
class Faults:
    """What to break next. Counters count down as calls consume them.

    - ``expire_session_next``: next N API calls -> 401 INVALID_SESSION_ID.
    - ``lock_error_next``: next N write calls -> every record fails with UNABLE_TO_LOCK_ROW
      (collections: HTTP 200 with per-record errors; single record: HTTP 400); nothing written.
    - ``server_error_burst``: next N API calls -> 503 SERVER_UNAVAILABLE, nothing done.
    - ``rate_limit_ratio``: this fraction of API calls -> 429 REQUEST_LIMIT_EXCEEDED
      (concurrent-request limit; seeded, so runs repeat).
    - ``reject_field_values``: ``{field: {values}}``; a write setting such a value fails per
      record with FIELD_CUSTOM_VALIDATION_EXCEPTION (a validation rule).
    - ``duplicate_rule_emails``: creating a Lead with one of these emails -> DUPLICATES_DETECTED.
    - ``timeout_next``: next N API calls sleep ``timeout_seconds`` *then are processed*
      (a client that timed out does not know whether its write happened).
    - ``subrequest_error_next``: the next N Composite subrequests whose URL contains
      ``subrequest_error_match`` (any when empty) fail with ``subrequest_error_code``
      (``QUERY_TIMEOUT``: HTTP 400; see ``SUBREQUEST_STATUS``), nothing done; the Composite
      call itself answers 200 and runs the others (``allOrNone: false``) or rolls them back.
    - ``latency_spread_ms``: ``[low, mode, high]``: each API call waits a latency drawn from
      that triangular spread (seeded, its own RNG) instead of the sandbox's fixed ``latency_ms``.
    - ``bulk_job_seconds``: ``[low, high]``: a Bulk API 2.0 query job stays ``InProgress``
      for a time drawn uniformly from that range (seeded) before ``JobComplete``.
    """

    expire_session_next: int = 0
    lock_error_next: int = 0
    server_error_burst: int = 0
    rate_limit_ratio: float = 0.0
    reject_field_values: dict[str, set[str]] = field(default_factory=dict)
    duplicate_rule_emails: set[str] = field(default_factory=set)
    timeout_next: int = 0
    timeout_seconds: float = 5.0
    subrequest_error_next: int = 0
    subrequest_error_match: str = ""
    subrequest_error_code: str = "QUERY_TIMEOUT"
    latency_spread_ms: list[float] | None = None
    bulk_job_seconds: list[float] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(self.seed)
        self._latency_rng = random.Random(f"latency-{self.seed}")
        self._bulk_rng = random.Random(f"bulk-{self.seed}")

    def latency_seconds(self, fixed_ms: float) -> float:
        """Seconds this call waits: drawn from ``latency_spread_ms`` if set, else ``fixed_ms``."""
        spread = self.latency_spread_ms
        if not spread:
            return fixed_ms / 1000
        low, mode, high = (float(x) for x in spread)
        with self._lock:
            return self._latency_rng.triangular(low, high, mode) / 1000

    def bulk_job_delay(self) -> float:
        """Seconds a new Bulk API 2.0 query job takes to complete (0 without the knob)."""
        spread = self.bulk_job_seconds
        if not spread:
            return 0.0
        with self._lock:
            return self._bulk_rng.uniform(float(spread[0]), float(spread[-1]))

    def take(self, name: str) -> bool:
        """Consume one unit of a counter fault; True if it fired."""
        if name not in _COUNTERS:
            raise ValueError(f"not a counter fault: {name}")
        with self._lock:
            remaining = getattr(self, name)
            if remaining <= 0:
                return False
            setattr(self, name, remaining - 1)
            return True

    def subrequest_error(self, url: str) -> str | None:
        """The error code a Composite subrequest to ``url`` fails with now, if any (consumed)."""
        with self._lock:
            if self.subrequest_error_next <= 0 or self.subrequest_error_match not in url:
                return None
            self.subrequest_error_next -= 1
            return self.subrequest_error_code

    def rate_limited(self) -> bool:
        with self._lock:
            return self.rate_limit_ratio > 0 and self._random.random() < self.rate_limit_ratio

    def rejects(self, field_name: str, value: Any) -> bool:
        with self._lock:
            for name, values in self.reject_field_values.items():
                if name.lower() == field_name.lower() and str(value) in values:
                    return True
            return False

    def duplicate_email(self, email: Any) -> bool:
        with self._lock:
            return isinstance(email, str) and email.lower() in {e.lower() for e in self.duplicate_rule_emails}

    def merge(self, changes: dict[str, Any]) -> None:
        """Apply a JSON-ish dict (as POSTed to ``/__sandbox/faults``)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        with self._lock:
            for name, value in changes.items():
                if name == "reject_field_values":
                    value = {k: set(v) for k, v in value.items()}
                elif name == "duplicate_rule_emails":
                    value = set(value)
                setattr(self, name, value)

    def snapshot(self) -> dict[str, Any]:
        """Current settings as JSON-ready data."""
        with self._lock:
            return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name != "seed"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, set):
        return sorted(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
