"""Fault knobs for the HubSpot sandbox: rate limits, 5xx bursts, locks, rejected values.

A :class:`Faults` instance is shared with the running app and may be changed at runtime
(attribute assignment, :meth:`Faults.update`, or ``POST /__sandbox/faults``). Decisions
that consume state (bursts, counters, the RNG) take the instance's lock.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Injected:
    """A fault to answer with instead of the real response."""

    status: int
    kind: str  # "rate_limit", "server_error", "locked", "unauthorized"


@dataclass
class Faults:
    """Mutable, thread-safe fault configuration."""

    #: Every Nth API call answers 429 TEN_SECONDLY_ROLLING (Retry-After 0 or 1).
    rate_limit_every: int | None = None
    #: Fraction of API calls answered with 429, drawn from a RNG seeded with ``seed``.
    rate_limit_ratio: float = 0.0
    #: The next N API calls answer 502, 503, 504, 502, ...
    server_error_burst: int = 0
    #: The next N API calls answer 423 Locked.
    status_423_next: int = 0
    #: Property name -> values (or substrings) that make a create/update input fail.
    reject_property_values: dict[str, set[str]] = field(default_factory=dict)
    #: Daily request cap (None: the sandbox default, 1,000,000 and only with enforcement).
    daily_limit: int | None = None
    #: Answer every API call with 401.
    unauthorized: bool = False
    #: Per-call latency drawn from a triangular spread ``[low, mode, high]`` in ms (seeded
    #: by ``seed``, its own RNG); None: the sandbox's fixed ``latency_ms``.
    latency_spread_ms: list[float] | None = None
    seed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _rng: random.Random | None = field(default=None, repr=False, compare=False)
    _burst_index: int = field(default=0, repr=False, compare=False)
    _latency_rng: random.Random | None = field(default=None, repr=False, compare=False)

    def update(self, values: Mapping[str, Any]) -> None:
        """Merge settings (e.g. JSON from ``POST /__sandbox/faults``); unknown keys raise."""
        public = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(values) - public
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            for name, value in values.items():
                if name == "reject_property_values":
                    value = {k: set(v) for k, v in (value or {}).items()}
                setattr(self, name, value)
                if name == "seed":
                    self._rng = self._latency_rng = None

    def snapshot(self) -> dict[str, Any]:
        """Current settings as JSON-ready data."""
        with self._lock:
            out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
            out["reject_property_values"] = {k: sorted(v) for k, v in self.reject_property_values.items()}
            return out

    def decide(self, call_number: int) -> Injected | None:
        """The fault (if any) for the ``call_number``-th API call (1-based)."""
        with self._lock:
            if self.unauthorized:
                return Injected(401, "unauthorized")
            if self.server_error_burst > 0:
                self.server_error_burst -= 1
                status = (502, 503, 504)[self._burst_index % 3]
                self._burst_index += 1
                return Injected(status, "server_error")
            if self.status_423_next > 0:
                self.status_423_next -= 1
                return Injected(423, "locked")
            every = self.rate_limit_every
            if every and call_number % every == 0:
                return Injected(429, "rate_limit")
            if self.rate_limit_ratio > 0 and self._random() < self.rate_limit_ratio:
                return Injected(429, "rate_limit")
            return None

    def retry_after(self) -> int:
        """Seconds to put in Retry-After for an injected 429 (0 or 1)."""
        with self._lock:
            return int(self._random() < 0.5)

    def rejected(self, properties: Mapping[str, Any]) -> tuple[str, str] | None:
        """(property, value) of the first input value the faults reject, if any."""
        with self._lock:
            rules = {k: set(v) for k, v in self.reject_property_values.items()}
        for name, markers in rules.items():
            value = properties.get(name)
            if value is not None and any(m == str(value) or m in str(value) for m in markers):
                return name, str(value)
        return None

    def latency_seconds(self, fixed_ms: float) -> float:
        """Seconds this call waits: drawn from ``latency_spread_ms`` if set, else ``fixed_ms``."""
        spread = self.latency_spread_ms
        if not spread:
            return fixed_ms / 1000
        low, mode, high = (float(x) for x in spread)
        with self._lock:
            if self._latency_rng is None:
                self._latency_rng = random.Random(f"latency-{self.seed}")
            return self._latency_rng.triangular(low, high, mode) / 1000

    def _random(self) -> float:
        if self._rng is None:
            self._rng = random.Random(self.seed)
        return self._rng.random()
