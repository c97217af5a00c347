"""The HubSpot transport seam: every HTTP call the SDK makes passes through here.

The official SDK builds one generated API client per API package; its ``api_factory``
hook lets us wrap each client's REST layer once, so that we count calls per endpoint,
pace from the ``X-HubSpot-RateLimit-*`` headers and keep the search API under its
per-second limit, without touching the SDK.

It is also where a request that gets no answer is classified (``errors.classify``):
TLS verification, a malformed URL or an unknown host fail at once (exit 2); a refused,
reset or timed-out request is retried by the connector until the host has been silent
for too long (``connectors.network.Silence``), then the run gives up on it (exit 75).
urllib3's own hidden retries are turned off (``NO_RETRIES``): every attempt is counted,
paced and bounded here.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

import urllib3

from connectors.hubspot.errors import classify
from connectors.hubspot.paths import LEGACY, route
from connectors.network import Silence, diagnose, gave_up, origin
from crm_handoff.errors import CrmUnavailable

_ID = re.compile(r"/\d+(?=/|$)")

SEARCH_PER_SECOND = 5  # HubSpot search: 5 requests per second per account
LOW_WATER = 3  # pause for the rest of the window when this few requests are left
HEADROOM = LOW_WATER + 1  # slots of the window this client leaves unused
DEFAULT_MAX, DEFAULT_INTERVAL = 190, 10.0  # until the first response's headers say
CONNECT_TIMEOUT = 10.0  # never above the read timeout
#: urllib3 retries nothing itself (its default retries a read timeout 3 times, unseen):
#: the connector retries, and every attempt passes through ``CallMeter``.
NO_RETRIES = urllib3.Retry(total=None, connect=0, read=0, other=0, status=0, redirect=5)


#: Legacy APIs that have no date-versioned successor: called as they are at any version.
UNVERSIONED = ("/email/public/v1/",)


def _unversioned(url: str) -> bool:
    path = "/" + url.split("://", 1)[-1].partition("/")[2]
    return path.startswith(UNVERSIONED)


def endpoint(method: str, url: str) -> str:
    """``POST /crm/v3/objects/contacts/search`` from a full URL (ids collapsed)."""
    path = url.split("://", 1)[-1]
    path = "/" + path.split("/", 1)[1] if "/" in path else "/"
    path = path.split("?", 1)[0]
    return f"{method.upper()} {_ID.sub('/{id}', path)}"


class _Window:
    """Requests of one kind in a rolling window: each holds a slot from when it is sent
    until ``length`` seconds after its response (the server counts it on arrival, in
    between), so however late it arrives it can never be one too many."""

    def __init__(self, size: int, length: float) -> None:
        self.size, self.length = size, length
        self.answered: deque[float] = deque()
        self.in_flight = 0

    def wait(self, now: float) -> float:
        """Seconds until a slot is free (0: now)."""
        while self.answered and self.answered[0] <= now - self.length:
            self.answered.popleft()
        if self.in_flight + len(self.answered) < self.size:
            return 0.0
        return self.answered[0] + self.length - now if self.answered else 0.05

    def done(self, now: float) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.answered.append(now)


class Pacer:
    """Spends HubSpot's 10-second and search budgets evenly; thread-safe.

    Requests other than search share a rolling window of ``max - HEADROOM`` (the size
    and length learnt from the ``X-HubSpot-RateLimit-Max`` and ``-Interval-Milliseconds``
    headers); search requests one of ``SEARCH_PER_SECOND`` a second. Several threads
    together go at the full rate without a 429. A response with ``LOW_WATER`` or fewer
    requests left (another app spending the same budget) pauses every request for half
    a window.
    """

    def __init__(
        self,
        sleep: Callable[[float], None] = time.sleep,
        per_interval: int = DEFAULT_MAX,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._lock = threading.Lock()
        self._sleep = sleep
        self._pause_until = 0.0
        self._window = _Window(per_interval - HEADROOM, interval)
        self._search = _Window(SEARCH_PER_SECOND, 1.0)
        self.waited = 0.0

    def before(self, is_search: bool) -> None:
        window = self._search if is_search else self._window
        while True:
            with self._lock:
                now = time.monotonic()
                wait = max(self._pause_until - now, window.wait(now))
                if wait <= 0:
                    window.in_flight += 1
                    return
            self.waited += wait
            self._sleep(wait)

    def after(self, headers: Mapping[str, str], is_search: bool = False) -> None:
        with self._lock:
            (self._search if is_search else self._window).done(time.monotonic())
        remaining = headers.get("X-HubSpot-RateLimit-Remaining")
        interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if remaining is None or interval is None:
            return
        try:
            left, length = int(remaining), int(interval) / 1000.0
            most = int(headers.get("X-HubSpot-RateLimit-Max") or self._window.size + HEADROOM)
        except ValueError:
            return
        with self._lock:
            if length > 0 and most > HEADROOM:
                self._window.size, self._window.length = most - HEADROOM, length
            if left <= LOW_WATER:
                self._pause_until = max(self._pause_until, time.monotonic() + length / 2)


class CallMeter:
    """Counts calls per endpoint, feeds the pacer and bounds a silent host; one per connector."""

    def __init__(self, pacer: Pacer | None = None, api_version: str = LEGACY) -> None:
        self.api_version = api_version
        self.calls: Counter[str] = Counter()
        self.pacer = pacer or Pacer()
        self.silence = Silence()
        self._lock = threading.Lock()

    def wrap_rest_client(self, rest_client: Any) -> None:
        """Wrap a generated ``RESTClientObject.request`` (every verb goes through it)."""
        inner = rest_client.request
        meter = self

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            url = url if _unversioned(url) else route(url, meter.api_version)
            name = endpoint(method, url)
            search = name.endswith("/search")
            kwargs["_request_timeout"] = meter._timeout(url, kwargs.get("_request_timeout"))
            meter.pacer.before(search)
            with meter._lock:
                meter.calls[name] += 1
            started = meter.silence.now()
            try:
                response = inner(method, url, *args, **kwargs)
            except BaseException as exc:
                meter.pacer.after(_headers(getattr(exc, "headers", None)), search)
                meter._failed(exc, url, started)
                raise
            meter.silence.answered()
            meter.pacer.after(_headers(_raw_headers(response)), search)
            return response

        rest_client.request = request

    def _timeout(self, url: str, given: Any) -> tuple[float, float]:
        """(connect, read) timeouts for a request: within what is left of the silence budget."""
        if isinstance(given, tuple) and len(given) == 2:
            connect, read = float(given[0]), float(given[1])
        else:
            read = float(given) if isinstance(given, int | float) and given else 60.0
            connect = CONNECT_TIMEOUT
        left = self.silence.before(read)
        if left is None:
            raise CrmUnavailable("hubspot", gave_up(self.silence, f"{origin(url)} (HUBSPOT_BASE_URL)"))
        return min(connect, left), left

    def _failed(self, exc: BaseException, url: str, started: float) -> None:
        """After a request raised: an HTTP error status is an answer; no answer is classified."""
        if getattr(exc, "status", None):
            self.silence.answered()
            return
        failure = diagnose(exc)
        if failure is None:
            return
        error = classify(exc, url)
        if not failure.permanent and self.silence.failed(started, failure):
            where = f"{origin(url)} (HUBSPOT_BASE_URL)"
            raise CrmUnavailable("hubspot", gave_up(self.silence, where)) from exc
        raise error from exc

    def api_factory(self) -> Callable[[Any, str, dict[str, Any]], Any]:
        """An ``api_factory`` for ``hubspot.HubSpot`` that wraps every API it builds."""
        from hubspot.discovery.discovery_base import DiscoveryBase

        def factory(package: Any, api_name: str, config: dict[str, Any]) -> Any:
            api = DiscoveryBase._default_api_factory(package, api_name, {"retry": NO_RETRIES, **config})
            self.wrap_rest_client(api.api_client.rest_client)
            return api

        return factory


def _raw_headers(response: Any) -> Any:
    """Headers of an SDK ``RESTResponse`` or of a raw urllib3 response (``_preload_content=False``)."""
    inner = getattr(response, "urllib3_response", response)
    return getattr(inner, "headers", None)


def _headers(raw: Any) -> Mapping[str, str]:
    if raw is None:
        return {}
    try:
        return {str(k): str(v) for k, v in dict(raw).items()}
    except (TypeError, ValueError):
        return {}
