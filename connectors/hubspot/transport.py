"""The HubSpot transport seam: every HTTP call the SDK makes passes through here.

The official SDK builds one generated API client per API package; its ``api_factory``
hook lets us wrap each client's REST layer once, so that we count calls per endpoint,
pace from the ``X-HubSpot-RateLimit-*`` headers and keep the search API under its
per-second limit, without touching the SDK.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

from connectors.hubspot.paths import LEGACY, route

_ID = re.compile(r"/\d+(?=/|$)")

SEARCH_MIN_INTERVAL = 0.2  # HubSpot search: 5 requests per second per account
LOW_WATER = 3  # pause for the rest of the window when this few requests are left
HEADROOM = LOW_WATER + 1  # slots of the window this client leaves unused
DEFAULT_MAX, DEFAULT_INTERVAL = 190, 10.0  # until the first response's headers say


def endpoint(method: str, url: str) -> str:
    """``POST /crm/v3/objects/contacts/search`` from a full URL (ids collapsed)."""
    path = url.split("://", 1)[-1]
    path = "/" + path.split("/", 1)[1] if "/" in path else "/"
    path = path.split("?", 1)[0]
    return f"{method.upper()} {_ID.sub('/{id}', path)}"


class Pacer:
    """Spends HubSpot's 10-second and search budgets evenly; thread-safe.

    A request other than search holds a slot of the rolling window from when it is sent
    until one window after its response (HubSpot counts it on arrival, in between), and
    no request is sent while ``max - HEADROOM`` slots are held: several threads together
    go at the full rate without a 429. The window's size and length are learnt from the
    ``X-HubSpot-RateLimit-Max`` and ``-Interval-Milliseconds`` headers. A response with
    ``LOW_WATER`` or fewer requests left (another app spending the same budget) pauses
    every request for half a window. Search requests are spaced 0.2 s apart.
    """

    def __init__(
        self,
        sleep: Callable[[float], None] = time.sleep,
        per_interval: int = DEFAULT_MAX,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._lock = threading.Lock()
        self._sleep = sleep
        self._last_search = 0.0
        self._pause_until = 0.0
        self._done: deque[float] = deque()  # when recent requests (not search) were answered
        self._in_flight = 0
        self.per_interval, self.interval = per_interval, interval
        self.waited = 0.0

    def before(self, is_search: bool) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                wait = max(0.0, self._pause_until - now)
                if is_search:
                    wait = max(wait, self._last_search + SEARCH_MIN_INTERVAL - now)
                    self._last_search = now + wait
                else:
                    while self._done and self._done[0] <= now - self.interval:
                        self._done.popleft()
                    if self._in_flight + len(self._done) >= self.per_interval - HEADROOM:
                        free_at = self._done[0] + self.interval if self._done else now + 0.05
                        wait = max(wait, free_at - now)
                    if wait <= 0:
                        self._in_flight += 1
                        return
            if wait > 0:
                self.waited += wait
                self._sleep(wait)
            if is_search:
                return

    def after(self, headers: Mapping[str, str], is_search: bool = False) -> None:
        with self._lock:
            if not is_search:
                self._in_flight = max(0, self._in_flight - 1)
                self._done.append(time.monotonic())
        remaining = headers.get("X-HubSpot-RateLimit-Remaining")
        interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if remaining is None or interval is None:
            return
        try:
            left, window = int(remaining), int(interval) / 1000.0
            most = int(headers.get("X-HubSpot-RateLimit-Max") or self.per_interval)
        except ValueError:
            return
        with self._lock:
            if window > 0 and most > HEADROOM:
                self.per_interval, self.interval = most, window
            if left <= LOW_WATER:
                self._pause_until = max(self._pause_until, time.monotonic() + window / 2)


class CallMeter:
    """Counts calls per endpoint and feeds the pacer; one per connector."""

    def __init__(self, pacer: Pacer | None = None, api_version: str = LEGACY) -> None:
        self.api_version = api_version
        self.calls: Counter[str] = Counter()
        self.pacer = pacer or Pacer()
        self._lock = threading.Lock()

    def wrap_rest_client(self, rest_client: Any) -> None:
        """Wrap a generated ``RESTClientObject.request`` (every verb goes through it)."""
        inner = rest_client.request
        meter = self

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            url = route(url, meter.api_version)
            name = endpoint(method, url)
            search = name.endswith("/search")
            meter.pacer.before(search)
            with meter._lock:
                meter.calls[name] += 1
            try:
                response = inner(method, url, *args, **kwargs)
            except BaseException as exc:
                meter.pacer.after(_headers(getattr(exc, "headers", None)), search)
                raise
            meter.pacer.after(_headers(_raw_headers(response)), search)
            return response

        rest_client.request = request

    def api_factory(self) -> Callable[[Any, str, dict[str, Any]], Any]:
        """An ``api_factory`` for ``hubspot.HubSpot`` that wraps every API it builds."""
        from hubspot.discovery.discovery_base import DiscoveryBase

        def factory(package: Any, api_name: str, config: dict[str, Any]) -> Any:
            api = DiscoveryBase._default_api_factory(package, api_name, config)
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
